//! `lienthong pdf verify`: the hub's PDF signature verdict, offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::fail;
use super::packet::read_input;
use crate::pdfsig::{self, Verdict};

#[derive(Subcommand)]
pub enum PdfCommand {
    /// Verify a PDF's signatures and say whether it is two-layer signed; exits non-zero
    /// unless it is.
    Verify {
        /// The PDF, or - for standard input.
        file: PathBuf,
        #[command(flatten)]
        store: super::TrustArgs,
        /// A name (certificate O or CN) the issuing agency signs under (repeatable).
        #[arg(long = "organisation")]
        organisations: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: PdfCommand) -> ExitCode {
    match command {
        PdfCommand::Verify {
            file,
            store,
            organisations,
            json,
        } => verify(&file, &store.trust, &store.crls, &organisations, json),
    }
}

pub fn verify(
    file: &Path,
    trust: &Path,
    crls: &[PathBuf],
    organisations: &[String],
    json: bool,
) -> ExitCode {
    let pdf = match read_input(file) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let store = match crate::dsig::TrustStore::load(trust, crls, std::time::Duration::ZERO) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    for e in &store.crl_errors {
        eprintln!("lienthong: warning: CRL not used: {e}");
    }
    let expect = pdfsig::Expect {
        organisation_names: organisations,
        layers: &[],
    };
    let report = pdfsig::verify(
        &pdf,
        &store,
        &pdfsig::Limits::default(),
        &expect,
        std::time::SystemTime::now(),
    );
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("reports serialize")
        );
    } else {
        for s in &report.signatures {
            let state = match &s.problem {
                None => "valid".to_owned(),
                Some(p) => format!("{}: {}", p.code.as_str(), p.message),
            };
            println!(
                "{} [{:?}] {} — {}{}",
                s.field,
                s.layer,
                s.signer.as_deref().unwrap_or("?"),
                state,
                if s.weak_digest {
                    " (weak digest: SHA-1)"
                } else {
                    ""
                }
            );
        }
        println!("{}: {}", report.verdict.as_str(), report.message);
    }
    if report.verdict == Verdict::TwoLayer {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
