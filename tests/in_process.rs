//! The hub run in-process: `daemon::run` takes listeners bound by the caller (port 0 here)
//! and a shutdown token, so a test (or an embedding program) needs no binary, no ports
//! chosen in advance and no signals. Submit, pull and ack through it, then stop it cleanly.

mod common;

use std::sync::Arc;

use common::{A, B, SMALL_DIRECTORY, inbox, packet, post, submit};
use http::StatusCode;
use lienthong::client::{Client, HttpVersion};
use lienthong::config::{Config, Overrides};
use lienthong::daemon::{Listeners, run};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_runs_in_process_on_listeners_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("agencies.toml"), SMALL_DIRECTORY).unwrap();
    let directory = lienthong::directory::Directory::load(&d.join("agencies.toml")).unwrap();
    lienthong::pki::init(
        &lienthong::pki::PkiPaths::new(d.join("certs")),
        &directory,
        &["ops".to_owned(), "auditor".to_owned()],
    )
    .unwrap();
    let c = |p: &str| d.join("certs").join(p).display().to_string();
    // The dev PKI made above: `dev_pki = true` allows it (and, its files present, makes
    // nothing); a production config refuses it (tests/production.rs).
    let toml = format!(
        "[server]\ndata = \"{data}\"\nagencies = \"{agencies}\"\n\
         [tls]\ncert = \"{cert}\"\nkey = \"{key}\"\nclient_ca = \"{ca}\"\ndev_pki = true\n\
         [signature]\ntrust_dir = \"{trust}\"\n\
         [audit]\nsigning_cert = \"{hc}\"\nsigning_key = \"{hk}\"\n",
        data = d.join("data").display(),
        agencies = d.join("agencies.toml").display(),
        cert = c("server.pem"),
        key = c("server.key"),
        ca = c("ca.pem"),
        trust = c("trust"),
        hc = c("hub-signing.pem"),
        hk = c("hub-signing.key"),
    );
    std::fs::write(d.join("lienthong.toml"), toml).unwrap();
    let config = Config::load(Some(&d.join("lienthong.toml")), &Overrides::default()).unwrap();

    let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", https.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let hub = tokio::spawn(run(
        Listeners {
            https,
            ops,
            quic: None,
        },
        config,
        shutdown.clone(),
    ));

    let client = |agency: &str| {
        Client::new(
            &url,
            &d.join("certs/ca.pem"),
            &d.join(format!("certs/agencies/{agency}.pem")),
            &d.join(format!("certs/agencies/{agency}.key")),
            HttpVersion::Http2,
        )
        .unwrap()
    };
    let (a, b) = (Arc::new(client(A)), client(B));
    let signer = lienthong::dsig::Signer::load(
        &d.join(format!("certs/signing/{A}.pem")),
        &d.join(format!("certs/signing/{A}.key")),
    )
    .unwrap();
    let body = signer
        .sign(&packet(A, &[B], &format!("{A},2026/11/30,1/IP"), b""))
        .unwrap();
    let r = submit(&a, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let items = inbox(&b, "").await;
    assert_eq!(items.len(), 1);
    let r = post(&b, &format!("/v1/inbox/{id}/ack")).await;
    assert_eq!(r.json()["removed"], true);

    shutdown.cancel();
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(60), hub)
        .await
        .expect("the hub stops when told");
    stopped.unwrap().unwrap();
    // Stopped cleanly: the data directory opens again with the acked item gone.
    let store = lienthong::store::Store::open(&d.join("data/db")).unwrap();
    assert!(store.oldest_pending(B).unwrap().is_none());
}
