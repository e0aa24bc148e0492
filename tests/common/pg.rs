//! A PostgreSQL primary with one synchronous standby for a test (`scripts/pg-cluster.sh`),
//! stopped when dropped.

use std::path::PathBuf;
use std::process::Command;

pub struct PgCluster {
    pub url: String,
    dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-cluster.sh")
}

impl PgCluster {
    pub fn start() -> PgCluster {
        PgCluster::start_with(&[])
    }

    /// A cluster whose primary takes TLS only, with the certificate and key in `tls_dir`
    /// (`server.crt`, `server.key`).
    pub fn start_tls(tls_dir: &std::path::Path) -> PgCluster {
        PgCluster::start_with(&[("PG_TLS_DIR", tls_dir.as_os_str())])
    }

    fn start_with(env: &[(&str, &std::ffi::OsStr)]) -> PgCluster {
        let dir = tempfile::Builder::new()
            .prefix("lienthong-pg")
            .tempdir_in("/tmp")
            .unwrap();
        let port = {
            // Two free ports in a row (primary, standby).
            loop {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let p = l.local_addr().unwrap().port();
                if p < 65_000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                    break p;
                }
            }
        };
        let out = Command::new("bash")
            .envs(env.iter().copied())
            .arg(script())
            .arg("start")
            .arg(dir.path().join("pg"))
            .arg(port.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg-cluster.sh start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .lines()
            .last()
            .unwrap()
            .to_owned();
        PgCluster { url, dir }
    }
}

impl PgCluster {
    /// Sends `signal` (e.g. `STOP`, `CONT`) to every process of the standby: its postmaster
    /// and its children (the WAL receiver among them).
    pub fn signal_standby(&self, signal: &str) {
        let pidfile = self.dir.path().join("pg/standby/postmaster.pid");
        let text = std::fs::read_to_string(&pidfile).unwrap();
        let pid = text.lines().next().unwrap().trim().to_owned();
        let children = Command::new("pgrep").args(["-P", &pid]).output().unwrap();
        let mut pids: Vec<String> = String::from_utf8_lossy(&children.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        pids.push(pid);
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .args(&pids)
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pids:?}");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.dir.path().join("pg/standby/postmaster.pid").exists() {
            // A test that stopped it and failed must not leave it frozen.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.signal_standby("CONT")
            }));
        }
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path().join("pg"))
            .status();
    }
}
