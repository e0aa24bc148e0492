//! The README quick start, done the way a new user does it: `lienthong serve` with no
//! configuration in an empty directory, then curl and the CLI as agencies.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, matrix_version, run_ok};
use lienthong::client::HttpVersion;

const A: &str = "000.00.01.H13";
const B: &str = "000.00.02.H13";

fn curl(cwd: &Path, agency: &str, args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .current_dir(cwd)
        .args(["-sS", "--cacert", "certs/ca.pem", "--cert"])
        .arg(format!("certs/agencies/{agency}.pem"))
        .arg("--key")
        .arg(format!("certs/agencies/{agency}.key"))
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (body.to_owned(), status.to_owned())
}

#[test]
fn quick_start_with_curl_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let mut hub = Command::new(BIN)
        .current_dir(cwd)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let bound: serde_json::Value = loop {
        if let Ok(t) = std::fs::read_to_string(cwd.join("data/bound.json")) {
            break serde_json::from_str(&t).unwrap();
        }
        assert!(
            hub.try_wait().unwrap().is_none(),
            "hub exited during start-up"
        );
        assert!(Instant::now() < deadline, "hub did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let url = format!("https://{}", bound["https"].as_str().unwrap());
    let ops = format!("http://{}", bound["ops"].as_str().unwrap());
    // Embedded defaults: dev certificates for every agency of the sample directory.
    assert!(cwd.join("certs/ca.pem").exists());
    assert_eq!(
        std::fs::read_dir(cwd.join("certs/agencies"))
            .unwrap()
            .count(),
        519 * 2
    );

    // Compose and sign with the CLI, send with curl over HTTP/2.
    run_ok(Command::new(BIN).current_dir(cwd).args([
        "edxml",
        "new",
        "--from",
        A,
        "--to",
        B,
        "--subject",
        "Giấy mời họp",
        "-o",
        "p.edxml",
    ]));
    // Unsigned, it is refused (the default policy requires a valid signature).
    let (body, status) = curl(
        cwd,
        A,
        &["--data-binary", "@p.edxml", &format!("{url}/v1/documents")],
    );
    assert_eq!(status, "422 2", "{body}");
    assert!(body.contains("signature_missing"), "{body}");
    run_ok(Command::new(BIN).current_dir(cwd).args([
        "sign",
        "p.edxml",
        "--cert",
        &format!("certs/signing/{A}.pem"),
        "--key",
        &format!("certs/signing/{A}.key"),
        "-o",
        "p.signed.edxml",
    ]));
    let (body, status) = curl(
        cwd,
        A,
        &[
            "--http2",
            "--data-binary",
            "@p.signed.edxml",
            &format!("{url}/v1/documents"),
        ],
    );
    assert_eq!(status, "201 2", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();

    // The recipient lists, fetches and acks with curl over HTTP/1.1.
    let (body, status) = curl(cwd, B, &["--http1.1", &format!("{url}/v1/inbox")]);
    assert_eq!(status, "200 1.1");
    let items: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(items["items"][0]["id"], id.as_str());
    assert_eq!(items["items"][0]["subject"], "Giấy mời họp");
    assert_eq!(items["items"][0]["verdict"], "verified");
    assert_eq!(items["items"][0]["signer"], A);
    let (fetched, status) = curl(cwd, B, &[&format!("{url}/v1/documents/{id}")]);
    assert_eq!(status, "200 2");
    assert_eq!(
        fetched.as_bytes(),
        std::fs::read(cwd.join("p.signed.edxml"))
            .unwrap()
            .as_slice()
    );
    let (_, status) = curl(cwd, B, &["-X", "POST", &format!("{url}/v1/inbox/{id}/ack")]);
    assert_eq!(status, "200 2");

    // The same with the CLI, configured by environment variables.
    let cli = |agency: &str, args: &[&str]| {
        run_ok(
            Command::new(BIN)
                .current_dir(cwd)
                .env("LIENTHONG_HUB", &url)
                .env("LIENTHONG_CERT", format!("certs/agencies/{agency}.pem"))
                .env("LIENTHONG_KEY", format!("certs/agencies/{agency}.key"))
                .env("LIENTHONG_CA", "certs/ca.pem")
                .env("LIENTHONG_SIGN_CERT", format!("certs/signing/{agency}.pem"))
                .env("LIENTHONG_SIGN_KEY", format!("certs/signing/{agency}.key"))
                // The test matrix's protocol (LIENTHONG_TEST_HTTP=3: the CLI over HTTP/3).
                .env(
                    "LIENTHONG_HTTP3",
                    (matrix_version(HttpVersion::Auto) == HttpVersion::Http3).to_string(),
                )
                .args(args),
        )
    };
    run_ok(Command::new(BIN).current_dir(cwd).args([
        "edxml",
        "new",
        "--from",
        A,
        "--to",
        B,
        "--subject",
        "Công văn 2",
        "-o",
        "q.edxml",
    ]));
    cli(A, &["sign", "q.edxml", "-o", "q.signed.edxml"]);
    let sent = cli(A, &["send", "q.signed.edxml", "--json"]);
    let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
    let want = match matrix_version(HttpVersion::Auto) {
        HttpVersion::Http3 => "HTTP/3.0",
        _ => "HTTP/2.0", // ALPN's choice
    };
    assert_eq!(sent["http_version"], want, "{sent}");
    let id2 = sent["id"].as_str().unwrap().to_owned();
    let listing = cli(B, &["inbox"]);
    assert!(
        listing.contains(&id2) && listing.contains("Công văn 2") && listing.contains("verified"),
        "{listing}"
    );
    cli(B, &["fetch", &id2, "-o", "got.edxml"]);
    assert_eq!(
        std::fs::read(cwd.join("got.edxml")).unwrap(),
        std::fs::read(cwd.join("q.signed.edxml")).unwrap()
    );
    // The recipient checks the signature itself against the dev trust store.
    let verdict = cli(B, &["verify", "got.edxml"]);
    assert!(verdict.starts_with("verified:"), "{verdict}");
    assert!(cli(B, &["ack", &id2]).contains(&format!("acked {id2}")));
    assert!(cli(B, &["inbox"]).contains("inbox empty"));
    // A failure exits non-zero with the hub's message.
    let out = Command::new(BIN)
        .current_dir(cwd)
        .env("LIENTHONG_HUB", &url)
        .args([
            "ack",
            "ffffffffffffffff",
            "--cert",
            &format!("certs/agencies/{B}.pem"),
            "--key",
            &format!("certs/agencies/{B}.key"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));

    // Ops probes.
    for path in ["/healthz", "/readyz"] {
        let out = Command::new("curl")
            .args(["-sS", "-f", &format!("{ops}{path}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{path}");
    }

    // SIGTERM: drain and exit 0.
    run_ok(Command::new("kill").args(["-TERM", &hub.id().to_string()]));
    let status = hub.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let mut out = String::new();
    use std::io::Read;
    hub.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(
        out.contains("HTTPS (mutual TLS) on https://127.0.0.1:"),
        "{out}"
    );
}

/// `edxml new` in a tight loop makes a different DocumentId every time (the hub answers 409
/// for a reused one), and says nothing on stderr when nothing is wrong.
#[test]
fn edxml_new_makes_unique_document_ids_and_keeps_stderr_quiet() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        let out = Command::new(BIN)
            .args(["edxml", "new", "--from", A, "--to", B, "--subject", "x"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(
            out.stderr.is_empty(),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let start = text.find("<edXML:DocumentId>").unwrap() + "<edXML:DocumentId>".len();
        let end = start + text[start..].find('<').unwrap();
        let id = text[start..end].to_owned();
        assert!(seen.insert(id.clone()), "DocumentId {id} made twice");
    }
}
