//! `lienthong receive`: the agency's push endpoint (see [`crate::receive`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{TrustArgs, fail};
use crate::receive::ReceiveSettings;

#[derive(Args)]
pub(super) struct ReceiveArgs {
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: std::net::SocketAddr,
    /// Directory the packets are written to, as ID.edxml with ID.json beside it.
    #[arg(long)]
    out: PathBuf,
    /// The hub's signing certificate (PEM): push signatures must verify with it.
    #[arg(long)]
    hub_cert: PathBuf,
    /// CA certificates (PEM) the hub's TLS client certificate must chain to.
    #[arg(long, default_value = "certs/ca.pem")]
    hub_ca: PathBuf,
    /// The subject CN of the hub's client certificate (`[outbound] client_cert`).
    #[arg(long, default_value = "lienthong-hub")]
    hub_cn: String,
    /// This endpoint's TLS certificate and key (PEM); the hub checks it against the
    /// agency's `push_ca`.
    #[arg(long)]
    tls_cert: PathBuf,
    #[arg(long)]
    tls_key: PathBuf,
    #[command(flatten)]
    store: TrustArgs,
    /// Refuse (422) a packet whose XML signature does not verify, instead of keeping it with
    /// its verdict in ID.json.
    #[arg(long)]
    require_verified: bool,
    /// Largest packet taken.
    #[arg(long, default_value_t = 64 << 20)]
    max_bytes: usize,
}

pub(super) async fn run(a: ReceiveArgs) -> ExitCode {
    let hub_cert = match crate::tls::load_certs(&a.hub_cert) {
        Ok(c) if !c.is_empty() => c[0].to_vec(),
        Ok(_) => return fail(format!("{}: no certificate", a.hub_cert.display())),
        Err(e) => return fail(e),
    };
    let trust = match crate::dsig::TrustStore::load(
        &a.store.trust,
        &a.store.crls,
        std::time::Duration::from_secs(300),
    ) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    for e in &trust.crl_errors {
        eprintln!("lienthong: warning: CRL not used: {e}");
    }
    let settings = ReceiveSettings {
        out: a.out,
        hub_signing_cert: hub_cert,
        hub_cn: a.hub_cn,
        trust,
        require_verified: a.require_verified,
        max_bytes: a.max_bytes,
    };
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    match crate::receive::serve(a.listen, &a.tls_cert, &a.tls_key, &a.hub_ca, settings, stop).await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
