//! The `lienthong` command line: the hub (`serve`, `pki`) and the agency side (`send`, `inbox`,
//! `fetch`, `ack`, `edxml new`). Parsing and printing only; the work is in the library.

mod admin;
mod agency;
mod backup;
mod directory_cmd;
mod packet;
mod pdf;
mod pki;
mod receive_cmd;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::client::{Client, ClientError, HttpVersion};
use crate::directory::{self, Directory};

#[derive(Parser)]
#[command(
    name = "lienthong",
    version,
    about = "Document-interchange hub for edXML packets (trục liên thông văn bản)"
)]
struct Cli {
    /// Log what the command does on stderr (without it, commands other than `serve` print
    /// only errors and warnings there; RUST_LOG overrides both).
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Log lines as text (for people) or one JSON object per line (for log shippers).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "LIENTHONG_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub (mutual-TLS API and ops listener) until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Certificates: the development PKI, production requests, and checking a configuration's.
    Pki {
        #[command(subcommand)]
        command: pki::PkiCommand,
    },
    /// Submit an edXML packet.
    Send {
        file: PathBuf,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// List (and lease) pending items addressed to you.
    Inbox {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Long-poll up to this many seconds while the inbox is empty.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Download a packet byte for byte.
    Fetch {
        id: String,
        /// Write to FILE instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Acknowledge an item: it leaves your queue.
    Ack {
        id: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Load test: many agency clients submitting, pulling or fanning out; reports throughput,
    /// latency percentiles and the hub's CPU and peak RSS.
    Bench(admin::BenchArgs),
    /// Rate statistics: hub-wide with an ops or auditor certificate, your own as an agency.
    Stats {
        /// 1m, 1h, 24h or 30d.
        #[arg(long, default_value = "1h")]
        window: String,
        /// Show only this agency's row.
        #[arg(long)]
        agency: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Sign an edXML packet (enveloped XML-DSig in edXMLHeader) with a signing certificate.
    Sign {
        /// The packet, or - for standard input.
        file: PathBuf,
        /// Signing certificate (PEM; may hold the chain, signer first).
        #[arg(long, env = "LIENTHONG_SIGN_CERT")]
        cert: PathBuf,
        /// Its private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
        #[arg(long, env = "LIENTHONG_SIGN_KEY")]
        key: PathBuf,
        /// Signature method; it must fit the key. Default: rsa-sha256 for an RSA key,
        /// ecdsa-sha256 for a P-256 key.
        #[arg(long, value_enum)]
        algorithm: Option<crate::dsig::SignAlgorithm>,
        /// Write to FILE instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Verify a packet's signature as the hub does; exits non-zero unless it verifies.
    Verify {
        /// The packet, or - for standard input.
        file: PathBuf,
        #[command(flatten)]
        store: TrustArgs,
        /// Directory file, for signing-certificate pins (default: config/agencies.toml, else
        /// the embedded one).
        #[arg(long)]
        agencies: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Hub-signed receipts.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Compose edXML packets.
    Edxml {
        #[command(subcommand)]
        command: EdxmlCommand,
    },
    /// Back the running hub up into a new directory (an online RocksDB checkpoint and a
    /// manifest, through the ops listener).
    Backup {
        /// The new directory (absolute, or relative to here); it must not exist.
        #[arg(long)]
        to: PathBuf,
        /// The hub's ops listener.
        #[arg(long, default_value = "127.0.0.1:9464")]
        ops: std::net::SocketAddr,
        /// `[server] ops_token`, when set.
        #[arg(long, env = "LIENTHONG_OPS_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Restore a backup into a data directory (with the hub stopped); refuses a copy that
    /// does not match its manifest, and checks the restored audit log.
    Restore {
        #[arg(long)]
        from: PathBuf,
        /// The data directory to restore into (`[server] data`); its db/ must be empty.
        #[arg(long)]
        data: PathBuf,
        /// The hub's signing certificate to check the backup's tree head with (default: the
        /// copy in the manifest).
        #[arg(long)]
        hub_cert: Option<PathBuf>,
    },
    /// The agency directory from and to a spreadsheet (CSV, XLSX).
    Directory {
        #[command(subcommand)]
        command: directory_cmd::DirectoryCommand,
    },
    /// An agency's push endpoint: takes the hub's pushes (checking its client certificate
    /// and push signature), verifies each packet and writes it atomically to --out.
    Receive(receive_cmd::ReceiveArgs),
    /// The legal signatures on a PDF (Decree 30/2020: personal, then organisation).
    Pdf {
        #[command(subcommand)]
        command: pdf::PdfCommand,
    },
}

/// A signature trust store and CRLs, for the offline verify commands.
#[derive(Args)]
pub(super) struct TrustArgs {
    /// Signature trust store: a directory of CA certificates (PEM or DER).
    #[arg(long, default_value = "certs/trust")]
    pub trust: PathBuf,
    /// CRL files to check (repeatable).
    #[arg(long = "crl")]
    pub crls: Vec<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// Configuration file laid over the compiled-in defaults (config/lienthong.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    #[arg(long)]
    ops_listen: Option<std::net::SocketAddr>,
    /// UDP address for HTTP/3 (default: --listen's address and port).
    #[arg(long)]
    listen_quic: Option<std::net::SocketAddr>,
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    #[arg(long)]
    tls_key: Option<PathBuf>,
    #[arg(long)]
    client_ca: Option<PathBuf>,
    #[arg(long)]
    agencies: Option<PathBuf>,
    /// Signature trust store directory (default: [signature] trust_dir, certs/trust).
    #[arg(long)]
    trust: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ReceiptCommand {
    /// Verify a receipt (a JWS, as GET /v1/documents/{id}/receipts lists them) offline.
    Verify {
        file: PathBuf,
        /// The hub's signing certificate ([audit] signing_cert, certs/hub-signing.pem).
        #[arg(long)]
        hub_cert: PathBuf,
        /// Also check that the receipt is for this packet (its SHA-256).
        #[arg(long)]
        packet: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check an export (GET /v1/audit/export) against a signed tree head (GET
    /// /v1/audit/head) offline; exits non-zero on any altered, missing, inserted or reordered
    /// entry.
    Verify {
        #[arg(long)]
        export: PathBuf,
        #[arg(long)]
        tree_head: PathBuf,
        #[arg(long)]
        hub_cert: PathBuf,
    },
}

#[derive(Subcommand)]
enum EdxmlCommand {
    /// Compose a valid new-document packet.
    New {
        #[arg(long)]
        from: String,
        /// Recipients' OrganIds, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        to: Vec<String>,
        #[arg(long)]
        subject: String,
        /// Files to attach (repeatable).
        #[arg(long)]
        attach: Vec<PathBuf>,
        /// DocumentId (default: OrganId,yyyy/MM/dd,NUMBER/LT with a fresh number).
        #[arg(long)]
        document_id: Option<String>,
        /// Directory file for agency names (default: config/agencies.toml, else the embedded one).
        #[arg(long)]
        agencies: Option<PathBuf>,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ConnArgs {
    /// Hub URL.
    #[arg(long, env = "LIENTHONG_HUB", default_value = "https://127.0.0.1:8443")]
    hub: String,
    /// Your agency's client certificate (PEM).
    #[arg(long, env = "LIENTHONG_CERT")]
    cert: PathBuf,
    /// Your agency's private key (PEM).
    #[arg(long, env = "LIENTHONG_KEY")]
    key: PathBuf,
    /// CA certificate that signed the hub's certificate.
    #[arg(long, env = "LIENTHONG_CA", default_value = "certs/ca.pem")]
    ca: PathBuf,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
    #[arg(long, conflicts_with_all = ["http2", "http3"])]
    http1: bool,
    #[arg(long, conflicts_with = "http3")]
    http2: bool,
    /// HTTP/3 over QUIC (UDP, the hub's port); never falls back to TCP.
    #[arg(long, env = "LIENTHONG_HTTP3")]
    http3: bool,
}

impl ConnArgs {
    fn client(&self) -> Result<Client, ClientError> {
        let v = HttpVersion::from_flags(self.http1, self.http2, self.http3);
        Client::new(&self.hub, &self.ca, &self.cert, &self.key, v)
    }
}

fn load_directory(path: Option<&Path>) -> Result<Directory, directory::DirectoryError> {
    match path {
        Some(p) => Directory::load(p),
        None => Directory::load_or_embedded(Path::new(directory::DEFAULT_PATH), true),
    }
}

/// Writes a command's output to `path`, or to standard output.
fn write_output(path: Option<&Path>, bytes: &[u8]) -> std::io::Result<()> {
    match path {
        Some(p) => std::fs::write(p, bytes),
        None => std::io::Write::write_all(&mut std::io::stdout(), bytes),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("lienthong: {msg}");
    ExitCode::FAILURE
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs what it does; a command's output is its answer, so stderr stays
    // quiet unless something is wrong or -v asks for more.
    let default = if cli.verbose || matches!(cli.command, Command::Serve(_)) {
        "info,rustls=warn,hyper=warn"
    } else {
        "warn"
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(cli.command))
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve(a) => admin::serve(a).await,
        Command::Pki { command } => pki::run(command),
        Command::Sign {
            file,
            cert,
            key,
            algorithm,
            output,
        } => packet::sign(&file, &cert, &key, algorithm, output.as_deref()),
        Command::Verify {
            file,
            store,
            agencies,
            json,
        } => packet::verify(&file, &store.trust, &store.crls, agencies.as_deref(), json),
        Command::Receipt {
            command:
                ReceiptCommand::Verify {
                    file,
                    hub_cert,
                    packet,
                },
        } => packet::receipt_verify(&file, &hub_cert, packet.as_deref()),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    export,
                    tree_head,
                    hub_cert,
                },
        } => packet::audit_verify(&export, &tree_head, &hub_cert),
        Command::Send { file, conn } => agency::send(&file, &conn).await,
        Command::Inbox { limit, wait, conn } => agency::inbox(limit, wait, &conn).await,
        Command::Fetch { id, output, conn } => agency::fetch(&id, output.as_deref(), &conn).await,
        Command::Ack { id, conn } => agency::ack(&id, &conn).await,
        Command::Bench(b) => admin::bench(b).await,
        Command::Stats {
            window,
            agency,
            conn,
        } => agency::stats(&window, agency.as_deref(), &conn).await,
        Command::Pdf { command } => pdf::run(command),
        Command::Receive(a) => receive_cmd::run(a).await,
        Command::Directory { command } => directory_cmd::run(command),
        Command::Backup { to, ops, token } => backup::backup(&to, ops, token.as_deref()).await,
        Command::Restore {
            from,
            data,
            hub_cert,
        } => backup::restore(&from, &data, hub_cert.as_deref()),
        Command::Edxml {
            command:
                EdxmlCommand::New {
                    from,
                    to,
                    subject,
                    attach,
                    document_id,
                    agencies,
                    output,
                },
        } => packet::edxml_new(
            from,
            to,
            subject,
            attach,
            document_id,
            agencies.as_deref(),
            output.as_deref(),
        ),
    }
}
