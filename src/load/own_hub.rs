//! The hub the load tool starts for itself (this binary, a temp data dir, port 0), and what
//! it measures of a hub process (CPU seconds, peak RSS).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::dsig::Signer;

/// A hub started for the run; killed on drop.
pub(super) struct OwnHub {
    pub(super) child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for OwnHub {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

pub(super) fn start_hub(
    record_only: bool,
    pg_url: Option<&str>,
) -> Result<(OwnHub, String, PathBuf), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = policy_config(record_only);
    if let Some(url) = pg_url {
        config += &format!("[storage]\nengine = \"postgres\"\nurl = \"{url}\"\n");
    }
    start_hub_in(dir, &config, "127.0.0.1:0")
}

/// The `[signature]` section of a bench hub's config.
pub(super) fn policy_config(record_only: bool) -> String {
    let policy = if record_only { "record" } else { "require" };
    format!("[signature]\npolicy = \"{policy}\"\n")
}

/// Starts a hub in `dir` (its data, dev PKI and `config/agencies.toml` if one was written
/// there) with `config`, listening on `listen`; returns it, its URL and its certificates.
pub(super) fn start_hub_in(
    dir: tempfile::TempDir,
    config_text: &str,
    listen: &str,
) -> Result<(OwnHub, String, PathBuf), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let certs = dir.path().join("certs");
    let config = dir.path().join("bench.toml");
    std::fs::write(&config, config_text).map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .current_dir(dir.path())
        .args([
            "serve",
            "--listen",
            listen,
            "--ops-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the hub: {e}"))?;
    let mut hub = OwnHub { child, _dir: dir };
    let bound = hub._dir.path().join("data/bound.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&bound) {
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let url = format!("https://{}", v["https"].as_str().unwrap_or_default());
            return Ok((hub, url, certs));
        }
        if let Ok(Some(status)) = hub.child.try_wait() {
            return Err(format!("the hub exited during start-up: {status}"));
        }
        if Instant::now() > deadline {
            return Err("the hub did not start within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What [`OwnHub::enable_push`] needs, movable to a blocking thread.
pub(super) struct HubHandle {
    pid: u32,
    dir: PathBuf,
}

impl OwnHub {
    pub(super) fn clone_handle(&self) -> HubHandle {
        HubHandle {
            pid: self.child.id(),
            dir: self._dir.path().to_owned(),
        }
    }
}

impl HubHandle {
    /// Gives every agency of the hub's (embedded) directory the push endpoint `url`,
    /// reloads it (SIGHUP) and waits until the hub applied it.
    pub(super) fn enable_push(&self, url: &str) -> Result<(), String> {
        let mut agencies = crate::directory::Directory::parse(crate::directory::EMBEDDED)
            .map_err(|e| e.to_string())?
            .agencies()
            .to_vec();
        for a in &mut agencies {
            a.push_url = Some(url.to_owned());
        }
        let dir =
            crate::directory::Directory::from_agencies(agencies).map_err(|e| e.to_string())?;
        let file = self.dir.join(crate::directory::DEFAULT_PATH);
        std::fs::create_dir_all(file.parent().expect("a parent")).map_err(|e| e.to_string())?;
        std::fs::write(&file, dir.to_toml("# bench --mode push\n")).map_err(|e| e.to_string())?;
        let bound =
            std::fs::read_to_string(self.dir.join("data/bound.json")).map_err(|e| e.to_string())?;
        let ops: serde_json::Value = serde_json::from_str(&bound).map_err(|e| e.to_string())?;
        let ops = ops["ops"].as_str().unwrap_or_default().to_owned();
        Command::new("kill")
            .arg("-HUP")
            .arg(self.pid.to_string())
            .status()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !metrics_text(&ops).contains("lienthong_reloads_total{outcome=\"applied\"} 1") {
            if Instant::now() > deadline {
                return Err("the hub did not reload its directory within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl OwnHub {
    /// The address of its ops listener.
    pub(super) fn ops_addr(&self) -> Result<String, String> {
        let bound = std::fs::read_to_string(self._dir.path().join("data/bound.json"))
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_str(&bound).map_err(|e| e.to_string())?;
        Ok(v["ops"].as_str().unwrap_or_default().to_owned())
    }
}

/// The ops listener's /metrics (plain HTTP/1.0, empty on any error).
pub(super) fn metrics_text(ops: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(ops) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The agency's document-signing key: from `certs/signing` (the dev PKI layout, P-256), or
/// an RSA-2048 certificate issued now by the dev CA in `certs`.
pub(super) fn signer(certs: &Path, id: &str, key: super::BenchKey) -> Result<Signer, String> {
    if key == super::BenchKey::Rsa {
        use crate::pki::{Ca, PkiPaths, SigningKey};
        let ca = Ca::load_dev(&PkiPaths::new(certs)).map_err(|e| {
            format!(
                "RSA signing keys are issued by the dev CA, whose key is not usable in {}: {e} \
                 (--signing-key p256 signs with the keys in certs/signing)",
                certs.display()
            )
        })?;
        let since = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        let (cert, key) = ca
            .issue_signing(id, SigningKey::Rsa2048, since, 30)
            .map_err(|e| e.to_string())?;
        return Signer::from_pem(cert.as_bytes(), key.as_bytes()).map_err(|e| e.to_string());
    }
    let cert = certs.join(format!("signing/{id}.pem"));
    let key = certs.join(format!("signing/{id}.key"));
    Signer::load(&cert, &key).map_err(|e| {
        format!("no usable signing certificate for {id} (packets must be signed): {e}")
    })
}

/// Agencies with a certificate in `certs/agencies`, sorted.
pub(super) fn agencies(certs: &Path) -> Result<Vec<String>, String> {
    let dir = certs.join("agencies");
    let mut ids: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".pem"))
                .map(str::to_owned)
        })
        .collect();
    ids.sort();
    if ids.len() < 2 {
        return Err(format!(
            "{}: need certificates of at least two agencies",
            dir.display()
        ));
    }
    Ok(ids)
}

/// CPU seconds (user + system) of `pid`, from /proc.
pub(super) fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// Peak resident set (VmHWM) of `pid` in MiB.
pub(super) fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
