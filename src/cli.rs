//! The `lienthong` command line: the hub (`serve`, `pki`) and the agency side (`send`, `inbox`,
//! `fetch`, `ack`, `edxml new`). Parsing and printing only; the work is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http::Method;

use crate::client::{Client, ClientError, HttpVersion};
use crate::config::{Config, Overrides};
use crate::directory::{self, Directory};
use crate::edxml;
use crate::pki::{self, PkiPaths};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub (mutual-TLS API and ops listener) until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Development PKI.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
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
    Bench {
        #[arg(long, value_enum, default_value = "submit")]
        mode: crate::load::Mode,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Packet size in bytes (1 KiB to 10 MiB).
        #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1024..=10 * 1024 * 1024))]
        size: u64,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// A running hub (default: start one on a temp dir).
        #[arg(long)]
        hub: Option<String>,
        /// With --hub: the directory holding ca.pem and agencies/<OrganId>.pem|.key.
        #[arg(long, requires = "hub")]
        certs: Option<PathBuf>,
        /// With --hub: the hub's pid, to report its CPU and peak RSS.
        #[arg(long, requires = "hub")]
        hub_pid: Option<u32>,
        #[arg(long, conflicts_with = "http2")]
        http1: bool,
        #[arg(long)]
        http2: bool,
        #[arg(long)]
        json: bool,
        /// Send unsigned packets (measures the hub without signature work; a hub given by
        /// --hub must run [signature] policy = "record").
        #[arg(long)]
        unsigned: bool,
        /// Pull mode: items queued for each client before the clock starts (the run ends
        /// when the inboxes are drained or the duration is over).
        #[arg(long, default_value_t = 2000)]
        items: u64,
    },
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
        /// Signature trust store: a directory of CA certificates (PEM or DER).
        #[arg(long, default_value = "certs/trust")]
        trust: PathBuf,
        /// CRL files to check (repeatable).
        #[arg(long = "crl")]
        crls: Vec<PathBuf>,
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
enum PkiCommand {
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
    #[arg(long, conflicts_with = "http2")]
    http1: bool,
    #[arg(long)]
    http2: bool,
}

impl ConnArgs {
    fn client(&self) -> Result<Client, ClientError> {
        let v = HttpVersion::from_flags(self.http1, self.http2);
        Client::new(&self.hub, &self.ca, &self.cert, &self.key, v)
    }
}

fn load_directory(path: Option<&Path>) -> Result<Directory, directory::DirectoryError> {
    match path {
        Some(p) => Directory::load(p),
        None => Directory::load_or_embedded(Path::new(directory::DEFAULT_PATH), true),
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(cli.command))
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve(a) => {
            let overrides = Overrides {
                listen: a.listen,
                ops_listen: a.ops_listen,
                data: a.data,
                tls_cert: a.tls_cert,
                tls_key: a.tls_key,
                client_ca: a.client_ca,
                agencies: a.agencies,
                trust: a.trust,
            };
            let config = match Config::load(a.config.as_deref(), &overrides) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            match crate::daemon::serve(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Pki {
            command:
                PkiCommand::Init {
                    dir,
                    agencies,
                    roles,
                },
        } => {
            let roles = if roles.is_empty() {
                Config::load(None, &Overrides::default())
                    .map(|c| c.roles.all())
                    .unwrap_or_default()
            } else {
                roles
            };
            let directory = match load_directory(agencies.as_deref()) {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            match pki::init(&PkiPaths::new(&dir), &directory, &roles) {
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
        Command::Sign {
            file,
            cert,
            key,
            algorithm,
            output,
        } => sign(&file, &cert, &key, algorithm, output.as_deref()),
        Command::Verify {
            file,
            trust,
            crls,
            agencies,
            json,
        } => verify(&file, &trust, &crls, agencies.as_deref(), json),
        Command::Receipt {
            command:
                ReceiptCommand::Verify {
                    file,
                    hub_cert,
                    packet,
                },
        } => receipt_verify(&file, &hub_cert, packet.as_deref()),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    export,
                    tree_head,
                    hub_cert,
                },
        } => match crate::audit::verify::verify_export(&export, &tree_head, &hub_cert) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Send { file, conn } => {
            let body = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => return fail(format!("{}: {e}", file.display())),
            };
            agency_call(
                &conn,
                Method::POST,
                "/v1/documents",
                Bytes::from(body),
                |v| {
                    let created = v["created"].as_bool().unwrap_or(true);
                    format!(
                        "{} {} (DocumentId {}) for {} recipient(s), sha256 {}",
                        if created {
                            "accepted"
                        } else {
                            "already accepted as"
                        },
                        v["id"].as_str().unwrap_or("?"),
                        v["document_id"].as_str().unwrap_or("-"),
                        v["recipients"].as_array().map_or(0, Vec::len),
                        v["sha256"].as_str().unwrap_or("?"),
                    )
                },
            )
            .await
        }
        Command::Inbox { limit, wait, conn } => {
            let path = format!("/v1/inbox?limit={limit}&wait={wait}");
            agency_call(&conn, Method::GET, &path, Bytes::new(), |v| {
                let items = v["items"].as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    return "inbox empty".into();
                }
                let mut out = format!(
                    "{:<16}  {:<6}  {:<2}  {:<15}  {:>9}  {:<19}  SUBJECT / DOCUMENT\n",
                    "ID", "KIND", "ST", "FROM", "BYTES", "SIGNATURE"
                );
                for i in items {
                    let label = i["subject"]
                        .as_str()
                        .or(i["document_id"].as_str())
                        .or(i["response_for"].as_str())
                        .unwrap_or("");
                    out.push_str(&format!(
                        "{:<16}  {:<6}  {:<2}  {:<15}  {:>9}  {:<19}  {}\n",
                        i["id"].as_str().unwrap_or(""),
                        i["kind"].as_str().unwrap_or(""),
                        i["status_code"].as_str().unwrap_or(""),
                        i["from"].as_str().unwrap_or(""),
                        i["size"].as_u64().unwrap_or(0),
                        i["verdict"].as_str().unwrap_or("-"),
                        label
                    ));
                }
                out.trim_end().to_owned()
            })
            .await
        }
        Command::Fetch { id, output, conn } => {
            let client = match conn.client() {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            match client
                .call(Method::GET, &format!("/v1/documents/{id}"), Bytes::new())
                .await
            {
                Ok(reply) => {
                    let res = match &output {
                        Some(path) => std::fs::write(path, &reply.body),
                        None => {
                            use std::io::Write;
                            std::io::stdout().write_all(&reply.body)
                        }
                    };
                    match res {
                        Ok(()) => {
                            if let Some(path) = output {
                                eprintln!("wrote {} bytes to {}", reply.body.len(), path.display());
                            }
                            ExitCode::SUCCESS
                        }
                        Err(e) => fail(e),
                    }
                }
                Err(e) => fail(e),
            }
        }
        Command::Ack { id, conn } => {
            agency_call(
                &conn,
                Method::POST,
                &format!("/v1/inbox/{id}/ack"),
                Bytes::new(),
                |v| {
                    format!(
                        "acked {}{}",
                        v["id"].as_str().unwrap_or("?"),
                        if v["removed"].as_bool() == Some(false) {
                            " (already acked)"
                        } else {
                            ""
                        }
                    )
                },
            )
            .await
        }
        Command::Bench {
            mode,
            clients,
            size,
            duration,
            hub,
            certs,
            hub_pid,
            http1,
            http2,
            json,
            unsigned,
            items,
        } => {
            let spec = crate::load::LoadSpec {
                unsigned,
                items,
                mode,
                clients,
                size: size as usize,
                duration: std::time::Duration::from_secs(duration),
                version: HttpVersion::from_flags(http1, http2),
                hub: hub.map(|h| (h, certs.unwrap_or_else(|| PathBuf::from("certs")))),
                hub_pid,
                progress: !json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            match crate::load::run(spec).await {
                Ok(r) if json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&r).expect("report serializes")
                    );
                    ExitCode::SUCCESS
                }
                Ok(r) => {
                    let opt = |x: Option<f64>, unit: &str| {
                        x.map_or("n/a".into(), |v| format!("{v}{unit}"))
                    };
                    println!(
                        "{:?} · {} clients · {} bytes · {} · {:.1} s\n\
                         {} ok, {} errors · {:.1} packets/s · {:.2} MB/s\n\
                         latency ms: p50 {} · p90 {} · p99 {} · p99.9 {} · max {}\n\
                         hub: CPU {} · peak RSS {} · load tool CPU {}",
                        r.mode,
                        r.clients,
                        r.size_bytes,
                        r.http,
                        r.duration_secs,
                        r.ok,
                        r.errors,
                        r.packets_per_sec,
                        r.mb_per_sec,
                        r.p50_ms,
                        r.p90_ms,
                        r.p99_ms,
                        r.p999_ms,
                        r.max_ms,
                        opt(r.hub_cpu_percent, "%"),
                        opt(r.hub_peak_rss_mb, " MiB"),
                        opt(r.tool_cpu_percent, "%"),
                    );
                    if let Some(e) = r.first_error {
                        println!("first error: {e}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Stats {
            window,
            agency,
            conn,
        } => {
            let path = format!("/v1/stats?window={window}");
            agency_call(&conn, Method::GET, &path, Bytes::new(), |v| {
                render_stats(v, agency.as_deref())
            })
            .await
        }
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
        } => match compose(from, to, subject, attach, document_id, agencies.as_deref()) {
            Ok(xml) => {
                let res = match &output {
                    Some(p) => std::fs::write(p, xml.as_bytes()),
                    None => {
                        use std::io::Write;
                        std::io::stdout().write_all(xml.as_bytes())
                    }
                };
                match res {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                }
            }
            Err(e) => fail(e),
        },
    }
}

/// One API call with the readable or JSON rendering of its answer.
async fn agency_call(
    conn: &ConnArgs,
    method: Method,
    path: &str,
    body: Bytes,
    render: impl FnOnce(&serde_json::Value) -> String,
) -> ExitCode {
    let client = match conn.client() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match client.call(method, path, body).await {
        Ok(reply) => {
            let v = reply.json();
            if conn.json {
                println!("{v}");
            } else {
                println!("{}", render(&v));
            }
            ExitCode::SUCCESS
        }
        Err(e @ ClientError::Hub { .. }) if conn.json => {
            if let ClientError::Hub { code, message, .. } = &e {
                println!(
                    "{}",
                    serde_json::json!({"error": {"code": code, "message": message}})
                );
            }
            fail(e)
        }
        Err(e) => fail(e),
    }
}

fn compose(
    from: String,
    to: Vec<String>,
    subject: String,
    attach: Vec<PathBuf>,
    document_id: Option<String>,
    agencies: Option<&Path>,
) -> Result<String, String> {
    let dir = load_directory(agencies).map_err(|e| e.to_string())?;
    let name = |id: &str| {
        dir.get(id)
            .map_or_else(|| id.to_owned(), |a| a.name.clone())
    };
    for id in std::iter::once(&from).chain(&to) {
        if !edxml::is_valid_organ_id(id) {
            return Err(format!("{id:?} is not a valid OrganId"));
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let date = format!(
        "{:04}/{:02}/{:02}",
        now.year(),
        now.month() as u8,
        now.day()
    );
    // Unique among every packet this and other processes make: the millisecond and 40
    // random bits (a UUIDv7's random part), so calls in the same millisecond still differ
    // (a collision makes the hub answer 409 for a different document).
    let random = u64::from_be_bytes(
        uuid::Uuid::now_v7().as_bytes()[8..16]
            .try_into()
            .expect("8 bytes"),
    );
    let number = format!(
        "{}{:012}",
        (now.unix_timestamp_nanos() / 1_000_000) % 1_000_000_000,
        (random & 0xff_ffff_ffff) % 1_000_000_000_000
    );
    let mut attachments = Vec::new();
    for path in attach {
        let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file_name = path
            .file_name()
            .map_or("attachment".into(), |n| n.to_string_lossy().into_owned());
        let content_type = match path.extension().and_then(|e| e.to_str()) {
            Some("pdf") => "application/pdf",
            Some("zip") => "application/zip",
            Some("txt") => "text/plain",
            Some("xml") => "application/xml",
            _ => "application/octet-stream",
        };
        attachments.push(edxml::Attachment {
            name: file_name,
            content_type: content_type.into(),
            data,
        });
    }
    let doc = edxml::NewDocument {
        from_name: name(&from),
        to: to.iter().map(|t| (t.clone(), name(t))).collect(),
        document_id: document_id.unwrap_or_else(|| format!("{from},{date},{number}/LT")),
        from,
        code_number: number.chars().take(11).collect(),
        code_notation: "LT".into(),
        subject,
        date,
        attachments,
    };
    let xml = edxml::compose_document(&doc);
    edxml::parse(xml.as_bytes()).map_err(|e| format!("composed packet is invalid: {e}"))?;
    Ok(xml)
}

/// The terminal table of `lienthong stats`.
fn render_stats(v: &serde_json::Value, only: Option<&str>) -> String {
    // serde_json's Display ignores width, so numbers go through u64 for the columns.
    let n = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
    let t = &v["totals"];
    let share = |x: &serde_json::Value| {
        x.as_f64()
            .map_or("-".into(), |f| format!("{:.1}%", f * 100.0))
    };
    let mut out = format!(
        "window {} (covering {} s) · scope {}\n\
         accepted {} ({}/min) · acked {} · refused {} · pending {} · signature verified {} · electronic {}\n",
        v["window"].as_str().unwrap_or("?"),
        v["covered_secs"],
        v["scope"].as_str().unwrap_or("?"),
        t["accepted"],
        t["accepted_per_min"],
        t["acked"],
        t["refused"],
        v["pending"],
        share(&t["verified_share"]),
        share(&t["electronic_share"]),
    );
    if let Some(reasons) = t["refused_by_reason"].as_object().filter(|r| !r.is_empty()) {
        let list: Vec<String> = reasons.iter().map(|(k, n)| format!("{k} {n}")).collect();
        out.push_str(&format!("refusals: {}\n", list.join(", ")));
    }
    out.push_str(&format!(
        "\n{:<15} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "AGENCY", "SENT", "RECEIVED", "ACKED", "REFUSED", "PENDING"
    ));
    for a in v["agencies"].as_array().into_iter().flatten() {
        let id = a["agency"].as_str().unwrap_or("");
        if only.is_some_and(|o| o != id) {
            continue;
        }
        out.push_str(&format!(
            "{:<15} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            id,
            n(&a["accepted"]),
            n(&a["received"]),
            n(&a["acked"]),
            n(&a["refused"]),
            n(&a["pending"])
        ));
    }
    let idle: Vec<String> = v["not_pulling"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| only.is_none_or(|o| a["agency"] == o))
        .take(5)
        .map(|a| {
            let idle = a["idle_secs"]
                .as_u64()
                .map_or("never pulled".into(), |s| format!("idle {s} s"));
            format!("{} ({idle})", a["agency"].as_str().unwrap_or(""))
        })
        .collect();
    if !idle.is_empty() {
        out.push_str(&format!("\nnot pulling: {}", idle.join(", ")));
    }
    out.trim_end().to_owned()
}

fn read_input(file: &Path) -> Result<Vec<u8>, String> {
    if file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|e| e.to_string())?;
        Ok(buf)
    } else {
        std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))
    }
}

fn sign(
    file: &Path,
    cert: &Path,
    key: &Path,
    algorithm: Option<crate::dsig::SignAlgorithm>,
    output: Option<&Path>,
) -> ExitCode {
    let body = match read_input(file) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let signer = match crate::dsig::Signer::load(cert, key) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Some(a) = algorithm
        && a != signer.algorithm()
    {
        return fail(format!(
            "--algorithm {a:?} does not fit the key, which signs {:?}",
            signer.algorithm()
        ));
    }
    let signed = match signer.sign(&body) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let res = match output {
        Some(p) => std::fs::write(p, &signed),
        None => std::io::Write::write_all(&mut std::io::stdout(), &signed),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn verify(
    file: &Path,
    trust: &Path,
    crls: &[PathBuf],
    agencies: Option<&Path>,
    json: bool,
) -> ExitCode {
    let body = match read_input(file) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let packet = match edxml::parse(&body) {
        Ok(p) => p,
        Err(e) => return fail(format!("{}: {e}", e.code())),
    };
    let store = match crate::dsig::TrustStore::load(trust, crls, std::time::Duration::ZERO) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    for e in &store.crl_errors {
        eprintln!("lienthong: warning: CRL not used: {e}");
    }
    let pins = load_directory(agencies)
        .ok()
        .and_then(|d| d.get(&packet.from).map(|a| a.signing_cert_sha256.clone()))
        .unwrap_or_default();
    let verdict = crate::dsig::verify_for_sender(
        &body,
        &packet.from,
        &pins,
        &store,
        std::time::SystemTime::now(),
    );
    match verdict {
        Ok(v) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"verdict": crate::dsig::VERDICT_VERIFIED,
                        "algorithm": v.algorithm, "signer": v.signer_cn,
                        "cert_sha256": v.cert_sha256, "from": packet.from})
                );
            } else {
                println!(
                    "verified: {} signature by {} (certificate sha256 {}), the sender {}",
                    v.algorithm,
                    v.signer_cn.as_deref().unwrap_or("?"),
                    v.cert_sha256,
                    packet.from
                );
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"verdict": f.code.as_str(), "message": f.message,
                        "from": packet.from})
                );
            } else {
                println!("{}: {}", f.code.as_str(), f.message);
            }
            ExitCode::FAILURE
        }
    }
}

fn receipt_verify(file: &Path, hub_cert: &Path, packet: Option<&Path>) -> ExitCode {
    let jws = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    let cert = match crate::tls::load_certs(hub_cert) {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => return fail(format!("{}: no certificate", hub_cert.display())),
        Err(e) => return fail(e),
    };
    let payload = match crate::jws::verify(&jws, &cert[0]) {
        Ok(p) => p,
        Err(e) => return fail(format!("the receipt does not verify: {e}")),
    };
    // A batch receipt covers several documents; the others one.
    let items: Vec<&serde_json::Value> = match payload["items"].as_array() {
        Some(items) => items.iter().collect(),
        None => vec![&payload],
    };
    if let Some(p) = packet {
        match std::fs::read(p) {
            Ok(body) => {
                let sha = crate::digest::sha256_hex(&body);
                if !items
                    .iter()
                    .any(|i| i["sha256"].as_str() == Some(sha.as_str()))
                {
                    let listed: Vec<&str> = items
                        .iter()
                        .map(|i| i["sha256"].as_str().unwrap_or("?"))
                        .collect();
                    return fail(format!(
                        "the receipt is for sha256 {}, not for {} (sha256 {sha})",
                        listed.join(", "),
                        p.display()
                    ));
                }
            }
            Err(e) => return fail(format!("{}: {e}", p.display())),
        }
    }
    for item in &items {
        println!(
            "verified: {} receipt for {} (sha256 {}), audit log entry {}",
            payload["type"].as_str().unwrap_or("?"),
            item["id"].as_str().unwrap_or("?"),
            item["sha256"].as_str().unwrap_or("?"),
            item["audit_index"]
        );
    }
    println!("{payload}");
    ExitCode::SUCCESS
}
