//! `lienthong directory import|export`: the agency directory from and to a spreadsheet.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::fail;
use crate::config::{Config, Overrides};
use crate::directory::{self, Directory};

#[derive(Subcommand)]
pub enum DirectoryCommand {
    /// Replace the directory file with a spreadsheet's rows (CSV or XLSX; columns OrganId,
    /// name, parent, cert_sha256, signing_cert_sha256, pdf_signer_names, push_url, push_ca).
    /// Every row is checked first; nothing is written unless all are valid. The running hub
    /// picks the new file up on SIGHUP (`systemctl reload lienthong`).
    Import {
        file: PathBuf,
        /// The sheet of a workbook (default: the first).
        #[arg(long)]
        sheet: Option<String>,
        #[command(flatten)]
        target: Target,
        /// Check the sheet and show what would change, without writing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write the directory as CSV or XLSX (by the file's extension), in the columns import
    /// reads.
    Export {
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
}

/// Which directory file: given, or the configuration's `[server] agencies`.
#[derive(clap::Args)]
pub struct Target {
    /// The hub's configuration file, for `[server] agencies`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The directory file itself (instead of the configuration's).
    #[arg(long, conflicts_with = "config")]
    agencies: Option<PathBuf>,
}

impl Target {
    fn path(&self) -> Result<PathBuf, String> {
        if let Some(p) = &self.agencies {
            return Ok(p.clone());
        }
        Config::load(self.config.as_deref(), &Overrides::default())
            .map(|c| c.server.agencies)
            .map_err(|e| e.to_string())
    }
}

pub fn run(command: DirectoryCommand) -> ExitCode {
    match command {
        DirectoryCommand::Import {
            file,
            sheet,
            target,
            dry_run,
        } => import(&file, sheet.as_deref(), &target, dry_run),
        DirectoryCommand::Export { file, target } => export(&file, &target),
    }
}

fn import(file: &Path, sheet: Option<&str>, target: &Target, dry_run: bool) -> ExitCode {
    let dest = match target.path() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let report = match directory::import(file, sheet, &dest, dry_run) {
        Ok(r) => r,
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    let list = |ids: &[String]| {
        if ids.is_empty() || ids.len() > 20 {
            String::new()
        } else {
            format!(" ({})", ids.join(", "))
        }
    };
    println!(
        "{} agencies: {} added{}, {} removed{}, {} changed{}",
        report.agencies,
        report.added.len(),
        list(&report.added),
        report.removed.len(),
        list(&report.removed),
        report.changed.len(),
        list(&report.changed)
    );
    if dry_run {
        println!("dry run: {} not written", dest.display());
    } else {
        println!(
            "wrote {}; reload the hub to use it: systemctl reload lienthong (or kill -HUP <pid>)",
            dest.display()
        );
    }
    ExitCode::SUCCESS
}

fn export(file: &Path, target: &Target) -> ExitCode {
    let source = match target.path() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let dir = match Directory::load(&source) {
        Ok(d) => d,
        Err(e) => return fail(format!("{}: {e}", source.display())),
    };
    match directory::export(&dir, file) {
        Ok(()) => {
            println!("{} agencies written to {}", dir.len(), file.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
