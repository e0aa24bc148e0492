//! Production certificates: `lienthong pki csr` makes the hub's keys and requests, an
//! independent CA (the openssl CLI) signs them, `pki check` passes them, and a hub with
//! `dev_pki = false` serves on them to curl holding an agency certificate from that CA. Then
//! `pki check` names each mistake an operator makes with real certificates.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `openssl …` in `dir`, which must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA made by openssl: `<name>.pem` / `<name>.key` in `dir`.
fn make_ca(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            &format!("/C=VN/O=Test Government CA/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// The CA `ca` signs `csr` into `out`: copying the requested extensions (as a CA that
/// honours the request does), or with `extfile` instead, or with none at all.
fn sign(dir: &Path, ca: &str, csr: &str, out: &str, extensions: Extensions) {
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "365",
        "-out",
        out,
    ];
    std::fs::write(
        dir.join("ext.cnf"),
        match extensions {
            Extensions::Requested | Extensions::None => "",
            Extensions::File(text) => text,
        },
    )
    .unwrap();
    match extensions {
        Extensions::Requested => args.extend(["-copy_extensions", "copyall"]),
        Extensions::File(_) => args.extend(["-extfile", "ext.cnf"]),
        Extensions::None => {}
    }
    openssl(dir, &args);
}

#[derive(Clone, Copy)]
enum Extensions {
    Requested,
    File(&'static str),
    None,
}

/// The production layout: requests from `pki csr`, certificates from the openssl CA, an
/// agency certificate from the same CA, and a config naming them with dev_pki off.
struct Production {
    dir: tempfile::TempDir,
}

impl Production {
    fn new() -> Production {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        run_ok(
            Command::new(BIN)
                .args([
                    "pki",
                    "csr",
                    "--name",
                    "hub.example.vn",
                    "--ip",
                    "127.0.0.1",
                ])
                .args(["--organization", "Sở Thông tin và Truyền thông", "--dir"])
                .arg(&certs),
        );
        make_ca(&certs, "gov-ca", "Test Government Root CA");
        for role in ["server", "hub-signing", "hub-client"] {
            let (csr, pem) = (format!("{role}.csr"), format!("{role}.pem"));
            sign(&certs, "gov-ca", &csr, &pem, Extensions::Requested);
        }
        // An agency's client certificate, the way its CA would issue it.
        openssl(
            &certs,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={A}"),
                "-keyout",
                "agency.key",
                "-out",
                "agency.csr",
            ],
        );
        sign(
            &certs,
            "gov-ca",
            "agency.csr",
            "agency.pem",
            Extensions::File("extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"),
        );
        std::fs::create_dir_all(certs.join("trust")).unwrap();
        std::fs::copy(certs.join("gov-ca.pem"), certs.join("trust/gov-ca.pem")).unwrap();
        std::fs::write(dir.path().join("agencies.toml"), SMALL_DIRECTORY).unwrap();
        let p = Production { dir };
        p.write_config("lienthong.toml", "");
        p
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A config file: the production one with `tls_over` lines added to its [tls] table.
    fn write_config(&self, name: &str, tls_over: &str) -> PathBuf {
        let d = self.dir.path().display();
        let text = format!(
            r#"[server]
listen = "127.0.0.1:0"
ops_listen = "127.0.0.1:0"
data = "{d}/data"
agencies = "{d}/agencies.toml"
[tls]
dev_pki = false
{tls_over}
[audit]
signing_cert = "{d}/certs/hub-signing.pem"
signing_key = "{d}/certs/hub-signing.key"
[outbound]
client_cert = "{d}/certs/hub-client.pem"
client_key = "{d}/certs/hub-client.key"
[signature]
trust_dir = "{d}/certs/trust"
"#
        );
        let defaults = format!(
            "cert = \"{d}/certs/server.pem\"\nkey = \"{d}/certs/server.key\"\nclient_ca = \"{d}/certs/gov-ca.pem\"\n"
        );
        // Keys given in tls_over replace the defaults.
        let tls: String = defaults
            .lines()
            .filter(|l| {
                let key = l.split('=').next().unwrap().trim();
                !tls_over
                    .lines()
                    .any(|o| o.split('=').next().unwrap().trim() == key)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let text = text.replace("dev_pki = false\n", &format!("dev_pki = false\n{tls}"));
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `lienthong serve --config` on this layout: the process, its HTTPS and ops addresses.
    fn serve(&self, config: &Path) -> (std::process::Child, String, String) {
        let mut hub = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let bound = self.path("data/bound.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&bound)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            {
                let addr = |k: &str| v[k].as_str().unwrap().to_owned();
                return (hub, addr("https"), addr("ops"));
            }
            assert!(hub.try_wait().unwrap().is_none(), "the hub exited");
            assert!(Instant::now() < deadline, "the hub did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SHA-256 fingerprint of the certificate the hub presents now (openssl s_client).
    fn served_fingerprint(&self, https: &str) -> String {
        let certs = self.path("certs");
        let hello = Command::new("openssl")
            .current_dir(&certs)
            .args([
                "s_client",
                "-connect",
                https,
                "-servername",
                "hub.example.vn",
            ])
            .args(["-cert", "agency.pem", "-key", "agency.key"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut x509 = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        x509.stdin.take().unwrap().write_all(&hello.stdout).unwrap();
        let out = x509.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `pki check --config`: (success, stdout).
    fn check(&self, config: &Path, extra: &[&str]) -> (bool, String) {
        let out = Command::new(BIN)
            .args(["pki", "check", "--config"])
            .arg(config)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

#[test]
fn csr_signed_by_an_independent_ca_checks_and_serves_curl() {
    let p = Production::new();
    let config = p.path("lienthong.toml");
    let (ok, out) = p.check(&config, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("0 error(s), 0 warning(s)"), "{out}");
    assert!(out.contains("names: hub.example.vn, 127.0.0.1"), "{out}");
    // The requests carried the profiles: the issued certificates show them.
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(p.path("certs/hub-signing.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Digital Signature, Non Repudiation"),
        "{text}"
    );

    let (mut hub, https, _) = p.serve(&config);
    let port = https.rsplit(':').next().unwrap();
    let certs = p.path("certs");
    let out = Command::new("curl")
        .current_dir(&certs)
        .args(["-sS", "--fail-with-body", "--cacert", "gov-ca.pem"])
        .args(["--cert", "agency.pem", "--key", "agency.key"])
        .args(["--resolve", &format!("hub.example.vn:{port}:127.0.0.1")])
        .arg(format!("https://hub.example.vn:{port}/v1/inbox"))
        .output()
        .unwrap();
    let _ = hub.kill();
    let _ = hub.wait();
    assert!(
        out.status.success(),
        "curl: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let inbox: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(inbox["items"].as_array().unwrap().is_empty(), "{inbox}");
}

#[test]
fn check_names_each_mistake() {
    let p = Production::new();
    let certs = p.path("certs");
    let d = certs.display();
    // A CA that ignores the requested extensions: no names, no usages.
    sign(&certs, "gov-ca", "server.csr", "bare.pem", Extensions::None);
    // One that issues a client certificate profile for the server request.
    let client_profile = "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:hub.example.vn\n";
    sign(
        &certs,
        "gov-ca",
        "server.csr",
        "clientish.pem",
        Extensions::File(client_profile),
    );
    make_ca(&certs, "other-ca", "Some Other CA");
    let cases: Vec<(&str, String, &[&str], &str)> = vec![
        (
            "key",
            format!("key = \"{d}/hub-client.key\""),
            &[],
            "does not belong to this certificate",
        ),
        (
            "bare",
            format!("cert = \"{d}/bare.pem\""),
            &[],
            "no subjectAltName",
        ),
        (
            "eku",
            format!("cert = \"{d}/clientish.pem\""),
            &[],
            "extended key usage lacks serverAuth",
        ),
        (
            "ca",
            format!("client_ca = \"{d}/server.pem\""),
            &[],
            "is not a CA certificate",
        ),
        (
            "other",
            String::new(),
            &["--ca", "certs/other-ca.pem"],
            "does not chain to the CA certificates in certs/other-ca.pem",
        ),
        (
            "soon",
            String::new(),
            &["--warn-days", "400"],
            "renew it now",
        ),
    ];
    for (name, tls, args, expect) in cases {
        let config = p.write_config(&format!("{name}.toml"), &tls);
        let out = Command::new(BIN)
            .current_dir(p.dir.path())
            .args(["pki", "check", "--config"])
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(expect), "{name}: {text}");
        // A warning alone passes; every other case is an error.
        assert_eq!(out.status.success(), name == "soon", "{name}: {text}");
    }
}

/// The development PKI, in a config that turned dev_pki off, is named as such.
#[test]
fn check_refuses_the_development_ca_in_production() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("agencies.toml"), SMALL_DIRECTORY).unwrap();
    run_ok(Command::new(BIN).current_dir(dir.path()).args([
        "pki",
        "init",
        "--agencies",
        "agencies.toml",
    ]));
    std::fs::write(dir.path().join("prod.toml"), "[tls]\ndev_pki = false\n").unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["pki", "check", "--config", "prod.toml", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dev: Vec<&serde_json::Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["item"] == "development CA" && f["level"] == "error")
        .collect();
    // The server, client CA, hub signing and outbound certificates.
    assert_eq!(dev.len(), 4, "{doc:#}");
    // With dev_pki on (the quick start), the same files pass with a warning.
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["pki", "check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("dev_pki: true"), "{text}");
}

/// A renewed server certificate is served after SIGHUP, without a restart; a key that does not
/// match is refused and the old certificate kept.
#[test]
fn a_renewed_server_certificate_is_served_after_sighup() {
    let p = Production::new();
    let (mut hub, https, ops) = p.serve(&p.path("lienthong.toml"));
    let before = p.served_fingerprint(&https);
    assert!(before.contains("Fingerprint"), "{before}");
    let certs = p.path("certs");
    let hup = |hub: &std::process::Child| {
        run_ok(Command::new("kill").args(["-HUP", &hub.id().to_string()]));
    };
    // A mismatched pair (another role's key) is refused: the old certificate stays.
    std::fs::copy(certs.join("server.key"), certs.join("server.key.good")).unwrap();
    std::fs::copy(certs.join("hub-client.key"), certs.join("server.key")).unwrap();
    hup(&hub);
    let refused = "lienthong_reloads_total{outcome=\"refused\"} 1";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("curl")
            .args(["-sS", &format!("http://{ops}/metrics")])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains(refused) {
            break;
        }
        assert!(Instant::now() < deadline, "the bad pair was never refused");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(p.served_fingerprint(&https), before);
    // The CA issues the renewal for the same key; SIGHUP; new handshakes present it.
    std::fs::copy(certs.join("server.key.good"), certs.join("server.key")).unwrap();
    sign(
        &certs,
        "gov-ca",
        "server.csr",
        "server.pem",
        Extensions::Requested,
    );
    hup(&hub);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = p.served_fingerprint(&https);
        if now != before && now.contains("Fingerprint") {
            break;
        }
        assert!(Instant::now() < deadline, "still {now}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = hub.kill();
    let _ = hub.wait();
}
