//! `lienthong bench` runs against a hub it starts and against a given one, and reports what
//! its JSON promises. (It measures; these tests only check that it works.)

mod common;

use std::process::Command;

use common::*;

fn report(args: &[&str]) -> serde_json::Value {
    let out = run_ok(
        Command::new(BIN)
            .args(["bench", "--json", "--duration", "1"])
            .args(args),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn check(r: &serde_json::Value) {
    for k in [
        "packets_per_sec",
        "mb_per_sec",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "hub_cpu_percent",
        "hub_peak_rss_mb",
        "tool_cpu_percent",
    ] {
        assert!(r[k].is_number(), "{k} missing in {r}");
    }
    assert_eq!(r["errors"], 0, "{r}");
    assert!(r["ok"].as_u64().unwrap() > 0, "{r}");
    assert!(r["p50_ms"].as_f64().unwrap() <= r["p99_ms"].as_f64().unwrap());
    assert!(r["hub_peak_rss_mb"].as_f64().unwrap() > 1.0);
}

#[test]
fn bench_starts_its_own_hub() {
    let r = report(&["--clients", "2", "--http2"]);
    assert_eq!(r["mode"], "submit");
    assert_eq!(r["http"], "h2");
    check(&r);
}

#[test]
fn bench_against_a_running_hub_in_pull_and_fanout_modes() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let pid = hub.pid().to_string();
    let url = hub.url();
    let certs = hub.path("certs");
    let certs = certs.to_str().unwrap();
    for mode in ["pull", "fanout"] {
        let r = report(&[
            "--mode",
            mode,
            "--clients",
            "3",
            "--hub",
            &url,
            "--certs",
            certs,
            "--hub-pid",
            &pid,
            "--http1",
            "--items",
            "20",
        ]);
        assert_eq!(r["mode"], mode);
        check(&r);
        if mode == "pull" {
            // 20 queued for each of the 3 agencies, each pulled and acked exactly once.
            assert_eq!(r["ok"], 60, "{r}");
        }
    }
    hub.stop();
}
