//! Test harness: runs the real `lienthong` binary on a temp dir with port 0 and a dev PKI made
//! by `lienthong pki init`, and talks to it over real mutual-TLS sockets.
#![allow(dead_code)]

pub mod pg;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use lienthong::client::{Client, HttpVersion, Reply};
use lienthong::edxml::{self, NewDocument};

pub const BIN: &str = env!("CARGO_BIN_EXE_lienthong");

pub const A: &str = "000.00.01.H13";
pub const B: &str = "000.00.02.H13";
pub const C: &str = "000.00.03.H13";

/// A small test directory of three agencies.
pub const SMALL_DIRECTORY: &str = r#"
[[agency]]
id = "000.00.01.H13"
name = "Sở A"
[[agency]]
id = "000.00.02.H13"
name = "Sở B"
[[agency]]
id = "000.00.03.H13"
name = "Sở C"
"#;

pub struct TestHub {
    pub dir: tempfile::TempDir,
    pub agencies: PathBuf,
    pub config: PathBuf,
    pub https: String,
    pub ops: String,
    /// The HTTP/3 (UDP) address, when QUIC is on.
    pub quic: Option<String>,
    /// Extra environment for the daemon (e.g. LD_PRELOAD of the fault shim).
    pub env: Vec<(String, String)>,
    /// The HTTPS address it listens on (port 0: a free one each start).
    pub listen: String,
    child: Option<Child>,
    /// With `LIENTHONG_TEST_STORAGE=postgres`: the PostgreSQL cluster it stores in.
    pub pg: Option<pg::PgCluster>,
}

/// `extra_config` with `[storage]` set to PostgreSQL at `url` (into an existing `[storage]`
/// table if it has one).
fn on_postgres(extra_config: &str, url: &str) -> String {
    let lines = format!("engine = \"postgres\"\nurl = \"{url}\"\n");
    if extra_config.contains("[storage]\n") {
        extra_config.replacen("[storage]\n", &format!("[storage]\n{lines}"), 1)
    } else {
        format!("{extra_config}\n[storage]\n{lines}")
    }
}

/// The python3 of the PyPI venv the tests use (cryptography, pyHanko, fpdf2, aioquic, …):
/// scripts/pyenv.sh makes it on first use.
pub fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run_ok(&mut Command::new(root.join("scripts/pyenv.sh")));
    PathBuf::from(out.trim())
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl TestHub {
    /// Starts a hub with `directory` (TOML text) and extra config TOML.
    pub fn start(directory: &str, extra_config: &str) -> TestHub {
        Self::start_env(directory, extra_config, &[])
    }

    /// [`TestHub::start`] with extra environment variables for the daemon.
    pub fn start_env(directory: &str, extra_config: &str, env: &[(&str, String)]) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let agencies = dir.path().join("agencies.toml");
        std::fs::write(&agencies, directory).unwrap();
        let config = dir.path().join("lienthong.toml");
        // `{DIR}` in the extra config stands for the hub's temp dir.
        let mut extra_config = extra_config.replace("{DIR}", &dir.path().display().to_string());
        // The suites run on RocksDB, and (CI) again on PostgreSQL.
        let pg = (std::env::var("LIENTHONG_TEST_STORAGE").as_deref() == Ok("postgres"))
            .then(pg::PgCluster::start);
        if let Some(pg) = &pg {
            extra_config = on_postgres(&extra_config, &pg.url);
        }
        std::fs::write(&config, extra_config).unwrap();
        run_ok(
            Command::new(BIN)
                .args(["pki", "init", "--dir"])
                .arg(dir.path().join("certs"))
                .arg("--agencies")
                .arg(&agencies),
        );
        let mut hub = TestHub {
            dir,
            agencies,
            config,
            https: String::new(),
            ops: String::new(),
            quic: None,
            env: Vec::new(),
            listen: "127.0.0.1:0".into(),
            child: None,
            pg,
        };
        hub.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        hub.spawn();
        hub
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `lienthong serve` with `config` and `data`, on free ports, with this hub's directory and
    /// dev PKI. Run in the temp dir, so the defaults for everything not given
    /// (certs/hub-signing.pem, …) are the dev PKI's files there.
    pub fn serve_command(&self, config: &std::path::Path, data: &std::path::Path) -> Command {
        let certs = self.path("certs");
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--listen", &self.listen, "--ops-listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(data)
            .arg("--agencies")
            .arg(&self.agencies)
            .arg("--tls-cert")
            .arg(certs.join("server.pem"))
            .arg("--tls-key")
            .arg(certs.join("server.key"))
            .arg("--client-ca")
            .arg(certs.join("ca.pem"))
            .arg("--trust")
            .arg(certs.join("trust"));
        cmd
    }

    /// Starts (or restarts) the daemon on fresh ports and waits for bound.json.
    pub fn spawn(&mut self) {
        let bound = self.path("data/bound.json");
        let _ = std::fs::remove_file(&bound);
        let child = self
            .serve_command(&self.config, &self.path("data"))
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn lienthong serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&bound) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    self.https = v["https"].as_str().unwrap().to_owned();
                    self.ops = v["ops"].as_str().unwrap().to_owned();
                    self.quic = v["quic"].as_str().map(str::to_owned);
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("hub exited during start-up: {status}");
            }
            assert!(Instant::now() < deadline, "hub did not start within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, sig: &str) {
        run_ok(
            Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(self.pid().to_string()),
        );
    }

    /// SIGTERM, and the hub must exit 0 on its own.
    pub fn stop(&mut self) {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "hub exited with {status} after SIGTERM");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "hub did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Simulates a crash: SIGKILL, no chance to flush.
    pub fn crash(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The ops listener's `/metrics` text (fetched with curl).
    pub fn metrics_text(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", &format!("http://{}/metrics", self.ops)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `/metrics` until it has `line` (an event to wait for, not a delay to guess).
    pub async fn wait_for_metric(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.metrics_text().contains(line) {
            assert!(Instant::now() < deadline, "/metrics never showed {line:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.https)
    }

    pub fn cert(&self, agency: &str) -> (PathBuf, PathBuf) {
        (
            self.path(&format!("certs/agencies/{agency}.pem")),
            self.path(&format!("certs/agencies/{agency}.key")),
        )
    }

    /// `GET /v1/stats?window=1h` as ops staff see it.
    pub async fn ops_stats(&self) -> serde_json::Value {
        self.role_client("ops")
            .call(Method::GET, "/v1/stats?window=1h", Bytes::new())
            .await
            .unwrap()
            .json()
    }

    /// A client with a role certificate (`certs/roles/<role>.pem`: ops, auditor).
    pub fn role_client(&self, role: &str) -> Client {
        Client::new(
            &self.url(),
            &self.path("certs/ca.pem"),
            &self.path(&format!("certs/roles/{role}.pem")),
            &self.path(&format!("certs/roles/{role}.key")),
            matrix_version(HttpVersion::Auto),
        )
        .unwrap()
    }

    /// The agency's document-signing certificate and key made by `pki init`.
    pub fn signing(&self, agency: &str) -> (PathBuf, PathBuf) {
        (
            self.path(&format!("certs/signing/{agency}.pem")),
            self.path(&format!("certs/signing/{agency}.key")),
        )
    }

    /// `body` signed with the agency's dev signing certificate.
    pub fn sign(&self, agency: &str, body: &[u8]) -> Vec<u8> {
        let (cert, key) = self.signing(agency);
        lienthong::dsig::Signer::load(&cert, &key)
            .unwrap()
            .sign(body)
            .unwrap()
    }

    /// [`packet`], signed by its sender.
    pub fn packet(&self, from: &str, to: &[&str], document_id: &str, attachment: &[u8]) -> Vec<u8> {
        self.sign(from, &packet(from, to, document_id, attachment))
    }

    /// An agency client. `HttpVersion::Auto` is the protocol of the test matrix run
    /// (`LIENTHONG_TEST_HTTP` = 1, 2 or 3; unset: ALPN decides, i.e. HTTP/2); a test that
    /// asks for a version gets it.
    pub fn client(&self, agency: &str, version: HttpVersion) -> Client {
        let (cert, key) = self.cert(agency);
        Client::new(
            &self.url(),
            &self.path("certs/ca.pem"),
            &cert,
            &key,
            matrix_version(version),
        )
        .unwrap()
    }
}

/// The matrix's protocol for clients that leave it to the run (see [`TestHub::client`]).
pub fn matrix_version(version: HttpVersion) -> HttpVersion {
    if version != HttpVersion::Auto {
        return version;
    }
    match std::env::var("LIENTHONG_TEST_HTTP").as_deref() {
        Ok("1") => HttpVersion::Http1,
        Ok("2") => HttpVersion::Http2,
        Ok("3") => HttpVersion::Http3,
        _ => HttpVersion::Auto,
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Deterministic pseudo-random bytes (attachments that do not compress).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A valid packet from `from` to `to`, with an optional attachment.
pub fn packet(from: &str, to: &[&str], document_id: &str, attachment: &[u8]) -> Vec<u8> {
    let doc = NewDocument {
        from: from.into(),
        from_name: format!("Cơ quan {from}"),
        to: to
            .iter()
            .map(|t| (t.to_string(), format!("Cơ quan {t}")))
            .collect(),
        document_id: document_id.into(),
        code_number: "12".into(),
        code_notation: "UBND-VP".into(),
        subject: format!("Về việc thử nghiệm {document_id}"),
        date: "2026/11/28".into(),
        attachments: if attachment.is_empty() {
            vec![]
        } else {
            vec![edxml::Attachment {
                name: "vanban.pdf".into(),
                content_type: "application/pdf".into(),
                data: attachment.to_vec(),
            }]
        },
    };
    edxml::compose_document(&doc).into_bytes()
}

pub async fn submit(c: &Client, body: Vec<u8>) -> Reply {
    c.request(Method::POST, "/v1/documents", Bytes::from(body))
        .await
        .unwrap()
}

pub async fn inbox(c: &Client, query: &str) -> Vec<serde_json::Value> {
    let r = c
        .call(Method::GET, &format!("/v1/inbox?{query}"), Bytes::new())
        .await
        .unwrap();
    r.json()["items"].as_array().cloned().unwrap()
}

pub async fn get(c: &Client, path: &str) -> Reply {
    c.request(Method::GET, path, Bytes::new()).await.unwrap()
}

pub async fn post(c: &Client, path: &str) -> Reply {
    c.request(Method::POST, path, Bytes::new()).await.unwrap()
}

pub fn error_code(r: &Reply) -> String {
    r.json()["error"]["code"].as_str().unwrap_or("").to_owned()
}

/// Total size of the files under `dir`.
pub fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    total
}
