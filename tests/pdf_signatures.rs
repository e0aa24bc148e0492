//! Two-layer PDF signatures (Decree 30/2020) checked by `lienthong pdf verify`, on PDFs made
//! at test time by independent tools (scripts/pdf_fixtures.py: `cryptography` for a test PKI,
//! fpdf2 for the document, pyHanko for the signatures and an overlay added after them), and
//! cross-checked with pdfsig (poppler), `openssl cms -verify` and `pyhanko sign validate`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, python, run_ok};

/// Makes the fixtures in a new temporary directory, with `trust/` holding the test root, and
/// three damaged copies of the two-layer PDF: one byte flipped inside the signed range,
/// truncated to half, and 40 random bytes overwritten.
fn fixtures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pdf_fixtures.py");
    run_ok(Command::new(python()).arg(script).arg(dir.path()));
    let p = |f: &str| dir.path().join(f);
    std::fs::create_dir(p("trust")).unwrap();
    std::fs::copy(p("ca.pem"), p("trust/ca.pem")).unwrap();
    let good = std::fs::read(p("two_layer.pdf")).unwrap();
    let mut flipped = good.clone();
    let at = find(&good, b"/OneColumn") + 4; // In the first revision: both signatures cover it.
    flipped[at] ^= 0x20;
    std::fs::write(p("flipped.pdf"), flipped).unwrap();
    std::fs::write(p("truncated.pdf"), &good[..good.len() / 2]).unwrap();
    let mut fuzzed = good.clone();
    let mut x = 0x2545_f491_u64;
    for _ in 0..40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % fuzzed.len() as u64) as usize;
        fuzzed[i] = (x >> 32) as u8;
    }
    std::fs::write(p("fuzzed.pdf"), fuzzed).unwrap();
    // The agency's signature value changed (the last byte of its CMS, inside the unsigned
    // gap): the document's bytes and digest are intact, the signature is not.
    let at = good
        .windows(12)
        .rposition(|w| w == b"/ByteRange [")
        .unwrap();
    let nums: Vec<usize> = std::str::from_utf8(&good[at + 12..at + 80])
        .unwrap()
        .split(']')
        .next()
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let hex_start = nums[1] + 1;
    let der: Vec<u8> = good[hex_start..hex_start + 16]
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect();
    let last = hex_start + 2 * (der_len(&der) - 1) + 1;
    let mut badsig = good.clone();
    badsig[last] = if badsig[last] == b'0' { b'1' } else { b'0' };
    std::fs::write(p("badsig.pdf"), badsig).unwrap();
    dir
}

/// The length of the DER object at the start of `der` (a CMS in `/Contents` is zero-padded).
fn der_len(der: &[u8]) -> usize {
    match der[1] {
        n if n < 0x80 => 2 + n as usize,
        n => {
            let k = (n & 0x7f) as usize;
            2 + k
                + der[2..2 + k]
                    .iter()
                    .fold(0usize, |a, b| a << 8 | *b as usize)
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

/// `lienthong pdf verify --json` on `file`: (exit success, report).
fn verify(dir: &Path, file: &str) -> (bool, serde_json::Value) {
    let out = Command::new(BIN)
        .args(["pdf", "verify", "--json", "--trust"])
        .arg(dir.join("trust"))
        .arg(dir.join(file))
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{file}: not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

#[test]
fn each_way_a_pdf_can_be_signed_gets_its_verdict() {
    let dir = fixtures();
    let cases = [
        ("two_layer.pdf", "two_layer"),
        ("base.pdf", "no_signature"),
        ("personal.pdf", "only_personal"),
        ("organisation.pdf", "only_organisation"),
        ("reversed.pdf", "order_reversed"),
        ("overlay.pdf", "disallowed_change"),
        ("untrusted.pdf", "chain_untrusted"),
        ("expired.pdf", "chain_untrusted"),
        ("stamped.pdf", "two_layer"),
        ("flipped.pdf", "digest_mismatch"),
        ("badsig.pdf", "signature_invalid"),
        ("truncated.pdf", "parse_error"),
        ("fuzzed.pdf", "parse_error"),
    ];
    for (file, want) in cases {
        let (ok, report) = verify(dir.path(), file);
        assert_eq!(report["verdict"], want, "{file}: {report:#}");
        assert_eq!(ok, want == "two_layer", "{file}: exit status");
    }
    let (_, report) = verify(dir.path(), "two_layer.pdf");
    let sigs = report["signatures"].as_array().unwrap();
    let layers: Vec<_> = sigs.iter().map(|s| s["layer"].as_str().unwrap()).collect();
    assert_eq!(layers, ["personal", "organisation"], "in revision order");
    assert_eq!(sigs[0]["signer"], "Nguyen Van A");
    assert_eq!(sigs[1]["organisation"], "UBND Quan 1");
    assert!(sigs[0]["revision_end"].as_u64() < sigs[1]["revision_end"].as_u64());
    assert!(sigs.iter().all(|s| s["problem"].is_null()));
    // The leader's certificate had expired when it signed; a trusted RFC 3161 time stamp
    // (pyHanko's test authority, two days back) places the signature inside its validity.
    let (_, stamped) = verify(dir.path(), "stamped.pdf");
    let leader = &stamped["signatures"][0];
    assert!(leader["timestamp"].is_string(), "{stamped:#}");
    assert!(leader["timestamp"].as_str() < leader["signing_time"].as_str());
    // The overlay is found after each signature, not only the last.
    let (_, overlay) = verify(dir.path(), "overlay.pdf");
    for s in overlay["signatures"].as_array().unwrap() {
        assert_eq!(s["problem"]["code"], "disallowed_change", "{overlay:#}");
    }
}

#[test]
fn the_organisation_must_be_the_sending_agencys() {
    let dir = fixtures();
    let run = |name: &str| {
        let out = Command::new(BIN)
            .args(["pdf", "verify", "--json", "--organisation", name, "--trust"])
            .arg(dir.path().join("trust"))
            .arg(dir.path().join("two_layer.pdf"))
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["verdict"].clone()
    };
    assert_eq!(run("UBND Quan 1"), "two_layer");
    assert_eq!(run("UBND Quan 3"), "organisation_mismatch");
}

/// pdfsig (poppler), OpenSSL and pyHanko reach the same digest, signature and modification
/// verdicts.
#[test]
fn pdfsig_and_pyhanko_agree() {
    let dir = fixtures();
    let pdfsig = |file: &str| {
        let out = Command::new("pdfsig")
            .arg(dir.path().join(file))
            .output()
            .expect("pdfsig (poppler-utils) is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let good = pdfsig("two_layer.pdf");
    assert_eq!(good.matches("Signature is Valid").count(), 2, "{good}");
    let flipped = pdfsig("flipped.pdf");
    assert!(flipped.contains("Digest Mismatch"), "{flipped}");
    assert!(!flipped.contains("Signature is Valid"), "{flipped}");
    // pdfsig calls the overlay valid (it checks bytes, not what changed after them); pyHanko
    // and lienthong do not.
    assert_eq!(
        pdfsig("overlay.pdf").matches("Signature is Valid").count(),
        2
    );

    // Each CMS with the bytes its ByteRange covers, given to `openssl cms -verify`.
    let openssl = |file: &str| -> Vec<bool> {
        let pdf = std::fs::read(dir.path().join(file)).unwrap();
        let (_, report) = verify(dir.path(), file);
        let sigs = report["signatures"].as_array().unwrap().clone();
        sigs.iter()
            .enumerate()
            .map(|(k, sig)| {
                let br: Vec<usize> = sig["byte_range"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect();
                let content = [&pdf[..br[1]], &pdf[br[2]..br[2] + br[3]]].concat();
                let hex = &pdf[br[1] + 1..br[2] - 1];
                let mut der: Vec<u8> = hex
                    .chunks(2)
                    .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
                    .collect();
                der.truncate(der_len(&der));
                let (data, cms) = (
                    dir.path().join(format!("{file}.{k}.bin")),
                    dir.path().join(format!("{file}.{k}.p7s")),
                );
                std::fs::write(&data, content).unwrap();
                std::fs::write(&cms, der).unwrap();
                Command::new("openssl")
                    .args([
                        "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
                    ])
                    .arg("-in")
                    .arg(&cms)
                    .arg("-content")
                    .arg(&data)
                    .arg("-CAfile")
                    .arg(dir.path().join("ca.pem"))
                    .args(["-out", "/dev/null"])
                    .output()
                    .unwrap()
                    .status
                    .success()
            })
            .collect()
    };
    assert_eq!(openssl("two_layer.pdf"), [true, true]);
    assert_eq!(openssl("flipped.pdf"), [false, false]);
    assert_eq!(openssl("badsig.pdf"), [true, false]);

    let pyhanko = python().parent().unwrap().join("pyhanko");
    let validate = |file: &str| {
        Command::new(&pyhanko)
            .args(["sign", "validate", "--trust"])
            .arg(dir.path().join("ca.pem"))
            .arg(dir.path().join(file))
            .output()
            .unwrap()
    };
    for (file, valid) in [
        ("two_layer.pdf", true),
        ("overlay.pdf", false),
        ("flipped.pdf", false),
    ] {
        let out = validate(file);
        assert_eq!(
            out.status.success(),
            valid,
            "pyhanko on {file}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let (ours, _) = verify(dir.path(), file);
        assert_eq!(ours, valid, "lienthong and pyHanko differ on {file}");
    }
}

/// Random damage anywhere in a two-layer PDF never panics the verifier, and is never
/// two-layer unless the damage fell outside every signed range and revision structure.
#[test]
fn damaged_pdfs_never_panic_or_pass() {
    let dir = fixtures();
    let good = std::fs::read(dir.path().join("two_layer.pdf")).unwrap();
    let trust = lienthong::dsig::TrustStore::load(
        &dir.path().join("trust"),
        &[],
        std::time::Duration::ZERO,
    )
    .unwrap();
    let check = |pdf: &[u8]| {
        lienthong::pdfsig::verify(
            pdf,
            &trust,
            &lienthong::pdfsig::Limits::default(),
            &Default::default(),
            std::time::SystemTime::now(),
        )
    };
    assert_eq!(check(&good).verdict.as_str(), "two_layer");
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut passed = 0;
    for n in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut pdf = good.clone();
        let i = (x % pdf.len() as u64) as usize;
        let new = (x >> 40) as u8;
        if pdf[i] == new {
            continue;
        }
        pdf[i] = new;
        if n % 50 == 0 {
            pdf.truncate(i.max(1));
        }
        if check(&pdf).verdict.as_str() == "two_layer" {
            passed += 1;
            // Only bytes no signature covers may change unnoticed: inside a signature's
            // hex /Contents after the DER it holds (the zero padding).
            let in_padding = good[..i]
                .iter()
                .rposition(|&b| b == b'<')
                .is_some_and(|open| {
                    good[open..i]
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || *b == b'<')
                        && i - open > 64
                });
            assert!(
                in_padding,
                "byte {i} changed to {new:#x} and still two_layer"
            );
        }
    }
    eprintln!("{passed} of 400 damaged copies still two_layer (changes in signature padding)");
}

/// The hub checks the PDFs of every document it accepts: the verdict is in inbox metadata
/// and `/status`, counted in `/v1/stats` (two-layer share) and `/metrics`; under `require` a
/// document whose main PDF is not two-layer is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_records_counts_and_can_require_two_layer_pdfs() {
    use common::{A, B, SMALL_DIRECTORY, TestHub, error_code, get, inbox, submit};
    use http::StatusCode;
    use lienthong::client::HttpVersion;

    let fx = fixtures();
    let pdf = |f: &str| std::fs::read(fx.path().join(f)).unwrap();
    let directory = SMALL_DIRECTORY.replace(
        "name = \"Sở A\"",
        "name = \"Sở A\"\npdf_signer_names = [\"UBND Quan 1\"]",
    );
    let config = |policy: &str| {
        format!(
            "[pdf_signature]\npolicy = \"{policy}\"\ntrust_dir = \"{}\"\n",
            fx.path().join("trust").display()
        )
    };
    let hub = TestHub::start(&directory, &config("record"));
    let (a, b) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
    );
    for (n, file) in ["two_layer.pdf", "personal.pdf", "overlay.pdf"]
        .iter()
        .enumerate()
    {
        let r = submit(
            &a,
            hub.packet(A, &[B], &format!("{A},2026/11/30,{n}/PDF"), &pdf(file)),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{file}: {:?}", r.json());
    }
    let items = inbox(&b, "limit=10").await;
    let verdicts: Vec<_> = items
        .iter()
        .map(|i| {
            i["pdf_signatures"][0]["verdict"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        verdicts,
        ["two_layer", "only_personal", "disallowed_change"]
    );
    assert_eq!(items[0]["pdf_signatures"][0]["name"], "vanban.pdf");
    let id = items[0]["id"].as_str().unwrap();
    let status = get(&a, &format!("/v1/documents/{id}/status")).await.json();
    assert_eq!(status["pdf_signatures"][0]["verdict"], "two_layer");

    let stats = get(&a, "/v1/stats?window=1h").await.json();
    let t = &stats["totals"];
    assert_eq!(
        (t["with_pdf"].as_u64(), t["two_layer"].as_u64()),
        (Some(3), Some(1)),
        "{t}"
    );
    let share = t["two_layer_share"].as_f64().unwrap();
    assert!((share - 0.3333).abs() < 1e-3, "{share}");
    let metrics = hub.metrics_text();
    assert!(
        metrics.contains("lienthong_pdf_verdicts_total{verdict=\"two_layer\"} 1"),
        "{metrics}"
    );
    drop(hub);

    let hub = TestHub::start(&directory, &config("require"));
    let a = hub.client(A, HttpVersion::Auto);
    let ok = submit(
        &a,
        hub.packet(
            A,
            &[B],
            &format!("{A},2026/11/30,7/PDF"),
            &pdf("two_layer.pdf"),
        ),
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let refused = submit(
        &a,
        hub.packet(
            A,
            &[B],
            &format!("{A},2026/11/30,8/PDF"),
            &pdf("reversed.pdf"),
        ),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&refused), "pdf_not_two_layer");
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("order_reversed"), "{message}");
}

/// `[[pdf_signature.layer]]` names certificates whose subject shows no layer (or a wrong
/// one), by subject or by issuer and serial; the configured layer wins.
#[test]
fn configured_layers_override_the_subject() {
    use der::Decode;
    let dir = fixtures();
    let cert_der = lienthong::tls::load_certs(&dir.path().join("organisation.pem")).unwrap();
    let cert = x509_cert::Certificate::from_der(&cert_der[0]).unwrap();
    let tbs = cert.tbs_certificate();
    let trust =
        lienthong::dsig::TrustStore::load(&dir.path().join("trust"), &[], Default::default())
            .unwrap();
    let pdf = std::fs::read(dir.path().join("two_layer.pdf")).unwrap();
    let verdict = |layers: &[lienthong::pdfsig::LayerOverride]| {
        let expect = lienthong::pdfsig::Expect {
            organisation_names: &[],
            layers,
        };
        let r = lienthong::pdfsig::verify(
            &pdf,
            &trust,
            &Default::default(),
            &expect,
            std::time::SystemTime::now(),
        );
        r.verdict.as_str()
    };
    assert_eq!(verdict(&[]), "two_layer");
    let by_subject: lienthong::pdfsig::LayerOverride = toml::from_str(&format!(
        "subject = {:?}\nlayer = \"personal\"",
        tbs.subject().to_string()
    ))
    .unwrap();
    assert_eq!(verdict(&[by_subject]), "only_personal");
    let serial: Vec<String> = tbs
        .serial_number()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let by_serial: lienthong::pdfsig::LayerOverride = toml::from_str(&format!(
        "issuer = {:?}\nserial = {:?}\nlayer = \"unknown\"",
        tbs.issuer().to_string(),
        serial.join(":")
    ))
    .unwrap();
    assert_eq!(verdict(&[by_serial]), "only_personal");
}
