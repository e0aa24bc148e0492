//! A hub configured for production (`[tls] dev_pki = false`) refuses to start with the
//! development CA that `lienthong pki init` makes; the quick start (dev_pki on) keeps working.

mod common;

use common::*;

#[test]
fn a_production_config_refuses_the_development_ca() {
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    let config = hub.path("production.toml");
    std::fs::write(&config, "[tls]\ndev_pki = false\n").unwrap();
    let out = hub
        .serve_command(&config, &hub.path("data-production"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started: {stderr}");
    assert!(stderr.contains("development CA"), "{stderr}");
    // The same files with dev_pki on (the default): the test hub above runs on them.
    assert!(hub.metrics_text().contains("lienthong_"));
}
