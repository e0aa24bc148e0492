//! `lienthong pki init|csr|check`: the development PKI, production requests, and the check of
//! what a configuration names.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Subcommand;

use super::{fail, load_directory};
use crate::config::{Config, Overrides};
use crate::pki::check::{self, Level};
use crate::pki::csr::{self, CsrRequest, KeyType};
use crate::pki::{self, PkiPaths};

#[derive(Subcommand)]
pub enum PkiCommand {
    /// Create what is missing of a dev CA, server certificate and per-agency client certificates.
    Init {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Directory file (default: config/agencies.toml, else the embedded sample).
        #[arg(long)]
        agencies: Option<PathBuf>,
        /// Role CNs to issue client certificates for (default: the [roles] of the
        /// compiled-in configuration).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Make the hub's production keys and certificate signing requests (TLS server, hub
    /// signing, outbound client), for the government CA to sign. Never overwrites a key.
    Csr {
        /// Where to write <role>.key and <role>.csr.
        #[arg(long, default_value = "/etc/lienthong/certs")]
        dir: PathBuf,
        /// The hub's DNS name (server certificate CN and first subjectAltName).
        #[arg(long)]
        name: String,
        /// More DNS names agencies may connect to (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// IP addresses agencies may connect to (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// CN of the outbound client certificate: the id peers know this hub by
        /// ([federation] hub_id). Default: --name.
        #[arg(long)]
        client_cn: Option<String>,
        /// Subject O: the agency operating the hub.
        #[arg(long)]
        organization: Option<String>,
        /// Subject C ("" for none).
        #[arg(long, default_value = "VN")]
        country: String,
        #[arg(long, value_enum, default_value = "rsa2048")]
        key_type: KeyType,
    },
    /// Check the certificates, keys, trust stores and CRLs a configuration names (chains, key
    /// usages, names, expiry, key pairs); exits non-zero on any error.
    Check {
        /// The hub's configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// CA certificates the server and outbound certificates must chain to (default:
        /// [tls] client_ca).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Warn about certificates expiring within this many days.
        #[arg(long, default_value_t = 30)]
        warn_days: u64,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: PkiCommand) -> ExitCode {
    match command {
        PkiCommand::Init {
            dir,
            agencies,
            roles,
        } => init(&dir, agencies.as_deref(), roles),
        PkiCommand::Csr {
            dir,
            name,
            dns,
            ip,
            client_cn,
            organization,
            country,
            key_type,
        } => make_csr(&CsrRequest {
            dir,
            name,
            dns,
            ips: ip,
            client_cn,
            organization,
            country,
            key_type,
        }),
        PkiCommand::Check {
            config,
            ca,
            warn_days,
            json,
        } => run_check(config.as_deref(), ca, warn_days, json),
    }
}

/// `pki init`: the development PKI for a directory.
fn init(dir: &Path, agencies: Option<&Path>, roles: Vec<String>) -> ExitCode {
    let roles = if roles.is_empty() {
        Config::load(None, &Overrides::default())
            .map(|c| c.roles.all())
            .unwrap_or_default()
    } else {
        roles
    };
    let directory = match load_directory(agencies) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    match pki::init(&PkiPaths::new(dir), &directory, &roles) {
        Ok(r) => {
            println!(
                "{}: CA {}, server certificate {}, {} client and {} signing certificates created",
                dir.display(),
                if r.created_ca { "created" } else { "kept" },
                if r.created_server { "created" } else { "kept" },
                r.created_clients,
                r.created_signing
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn make_csr(req: &CsrRequest) -> ExitCode {
    let made = match csr::make(req) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    for m in &made {
        println!(
            "{:<12} key {}  request {}  → certificate goes in {}",
            m.role,
            m.key.display(),
            m.csr.display(),
            m.config_key
        );
    }
    println!(
        "Send the .csr files to the CA; put each issued certificate (with the CA's intermediates after it) next to its key, then run `lienthong pki check --config …`."
    );
    ExitCode::SUCCESS
}

fn run_check(config: Option<&Path>, ca: Option<PathBuf>, warn_days: u64, json: bool) -> ExitCode {
    let config = match Config::load(config, &Overrides::default()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let opts = check::Options {
        anchors: ca,
        warn_days,
        now: SystemTime::now(),
    };
    let findings = check::check(&config, &opts);
    let (errors, warnings) = check::summary(&findings);
    if json {
        let doc = serde_json::json!({"errors": errors, "warnings": warnings, "findings": findings});
        println!("{doc:#}");
    } else {
        for f in &findings {
            let level = match f.level {
                Level::Ok => "ok     ",
                Level::Warning => "WARNING",
                Level::Error => "ERROR  ",
            };
            if f.path.is_empty() {
                println!("{level} {}: {}", f.item, f.message);
            } else {
                println!("{level} {} ({}): {}", f.item, f.path, f.message);
            }
        }
        println!("{errors} error(s), {warnings} warning(s)");
    }
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
