//! `bench --mode forward`: two hubs on this machine, A and B, peers of each other. Half of
//! the directory's agencies are A's (the senders), the other half B's (the recipients); A
//! routes everything it does not know to B (`default = true`). Clients submit to A; what
//! counts is what B has stored from A (`lienthong_peer_received_total{kind="packet"}` on
//! B's ops listener), so the rate is the forward rate between two hubs: A's acceptance, its
//! push to B, B's checks (signature included) and durable commit, B's hop receipt, A's
//! commit of the delivery.
//!
//! Both hubs share one dev PKI (B's `certs` is a link to A's), so they trust each other's
//! certificates and the agencies' signing certificates; each names the other with the dev
//! PKI's hub client certificate CN.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::own_hub::{OwnHub, metrics_text, policy_config, start_hub_in};

/// The two hubs of a forward run.
pub(super) struct Pair {
    pub a: OwnHub,
    pub b: OwnHub,
    pub a_url: String,
    pub certs: PathBuf,
    /// The recipients (B's agencies), for the clients to write to.
    pub recipients: Vec<String>,
    b_ops: String,
}

/// A port free now (bound and released), to put in both configs before either starts.
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// `[federation]` naming this hub and its one peer, the parent of everything unknown.
fn federation(me: &str, peer: &str, port: u16) -> String {
    format!(
        "[federation]\nhub_id = \"{me}\"\nmax_hops = 4\n[[peer]]\nid = \"{peer}\"\n\
         url = \"https://127.0.0.1:{port}\"\ncert_cn = \"{}\"\ndefault = true\n",
        crate::pki::HUB_CLIENT_CN
    )
}

/// Writes `agencies` as the directory a hub in `dir` starts with.
fn write_directory(
    dir: &std::path::Path,
    agencies: Vec<crate::directory::Agency>,
) -> Result<(), String> {
    let directory =
        crate::directory::Directory::from_agencies(agencies).map_err(|e| e.to_string())?;
    let file = dir.join(crate::directory::DEFAULT_PATH);
    std::fs::create_dir_all(file.parent().expect("a parent")).map_err(|e| e.to_string())?;
    std::fs::write(&file, directory.to_toml("# bench --mode forward\n")).map_err(|e| e.to_string())
}

/// Starts A and B.
pub(super) fn start_pair(record_only: bool, concurrency: Option<usize>) -> Result<Pair, String> {
    let all = crate::directory::Directory::parse(crate::directory::EMBEDDED)
        .map_err(|e| e.to_string())?
        .agencies()
        .to_vec();
    let (mut senders, mut recipients) = (Vec::new(), Vec::new());
    for (i, mut a) in all.into_iter().enumerate() {
        // Each half is a directory of its own: a parent may be on the other hub.
        a.parent = None;
        if i % 2 == 0 {
            senders.push(a);
        } else {
            recipients.push(a);
        }
    }
    let recipient_ids = recipients.iter().map(|a| a.id.clone()).collect();
    let (dir_a, dir_b) = (
        tempfile::tempdir().map_err(|e| e.to_string())?,
        tempfile::tempdir().map_err(|e| e.to_string())?,
    );
    write_directory(dir_a.path(), senders)?;
    write_directory(dir_b.path(), recipients)?;
    let (port_a, port_b) = (free_port()?, free_port()?);
    let policy = policy_config(record_only);
    let mut config_a = policy.clone() + &federation("hub.a", "hub.b", port_b);
    if let Some(n) = concurrency {
        config_a += &format!("concurrency = {n}\n");
    }
    let (a, a_url, certs) = start_hub_in(dir_a, &config_a, &format!("127.0.0.1:{port_a}"))?;
    std::os::unix::fs::symlink(&certs, dir_b.path().join("certs")).map_err(|e| e.to_string())?;
    let config_b = policy + &federation("hub.b", "hub.a", port_a);
    let (b, _, _) = start_hub_in(dir_b, &config_b, &format!("127.0.0.1:{port_b}"))?;
    let b_ops = b.ops_addr()?;
    Ok(Pair {
        a,
        b,
        a_url,
        certs,
        recipients: recipient_ids,
        b_ops,
    })
}

impl Pair {
    /// Packets B has stored from A so far.
    pub(super) fn arrived(&self) -> u64 {
        metrics_text(&self.b_ops)
            .lines()
            .filter(|l| l.starts_with("lienthong_peer_received_total{") && l.contains("packet"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Waits until B has `n` packets from A (or `limit` passed); returns when the last
    /// arrived, measured from `started` (polled every 20 ms), and how many did.
    pub(super) async fn drain(&self, n: u64, started: Instant, limit: Duration) -> (f64, u64) {
        let deadline = Instant::now() + limit;
        let mut arrived = self.arrived();
        while arrived < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            arrived = self.arrived();
        }
        (started.elapsed().as_secs_f64(), arrived)
    }
}
