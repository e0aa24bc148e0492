//! XML signatures against an independent implementation: the `xmlsec1` command-line tool
//! (Debian package `xmlsec1`, libxmlsec1 over OpenSSL). Packets xmlsec1 signs must verify in
//! the hub; packets `lienthong sign` makes must pass `xmlsec1 --verify`; tampering and bad
//! signers are refused with their reason codes and nothing is stored.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use http::StatusCode;
use lienthong::client::HttpVersion;
use lienthong::pki::{Ca, PkiPaths, SigningKey};
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

const C14N: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
const C14N_COMMENTS: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments";
const EXC: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const EXC_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";
const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";

/// A packet that exercises canonicalization: a PI and comments outside the root, two prefixes
/// for one namespace, unused and redeclared namespaces, attribute order and normalization,
/// references, a CR written as `&#13;`, CDATA, a comment inside, non-ASCII text. The
/// Signature template is for xmlsec1 to fill in.
fn template(from: &str, to: &str, doc_id: &str, c14n: &str, method: &str, digest: &str) -> String {
    let transforms = if c14n.is_empty() {
        String::new()
    } else {
        format!("<Transform Algorithm=\"{c14n}\"/>")
    };
    let si_c14n = if c14n.is_empty() { C14N } else { c14n };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet   type="text/xsl" href="x.xsl"?>
<!-- leading comment -->
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016" xml:lang="vi" xmlns:x="urn:extra">
  <edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016" xmlns:unused="urn:unused">
    <edXML:edXMLHeader>
      <edXML:MessageHeader z="1" a="2" x:b="3&#9;tab	lit" x:a="&lt;&amp;&quot;&apos;">
        <edXML:From>
          <edXML:OrganId>{from}</edXML:OrganId>
          <edXML:OrganName>Sở &amp; Ban — ngành &#x1F600;</edXML:OrganName>
        </edXML:From>
        <edXML:To>
          <edXML:OrganId>{to}</edXML:OrganId>
          <edXML:OrganName>Cơ quan nhận</edXML:OrganName>
        </edXML:To>
        <edXML:DocumentId>{doc_id}</edXML:DocumentId>
        <edXML:Subject>Line one&#13;
line two <![CDATA[<raw & cdata>]]> end</edXML:Subject>
        <!-- inner comment -->
      </edXML:MessageHeader>
      <x:Extra xmlns="urn:other" attr=" spaced  value "><Inner/></x:Extra>
      <edXML:TraceHeaderList/>
      <Signature xmlns="http://www.w3.org/2000/09/xmldsig#">
        <SignedInfo>
          <CanonicalizationMethod Algorithm="{si_c14n}"/>
          <SignatureMethod Algorithm="{method}"/>
          <Reference URI="">
            <Transforms>
              <Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
              {transforms}
            </Transforms>
            <DigestMethod Algorithm="{digest}"/>
            <DigestValue/>
          </Reference>
        </SignedInfo>
        <SignatureValue/>
        <KeyInfo><X509Data/></KeyInfo>
      </Signature>
    </edXML:edXMLHeader>
  </edXML:edXMLEnvelope>
  <edXML:edXMLBody xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016"><edXML:AttachmentEncoded><edXML:Attachment><edXML:AttachmentName>a.txt</edXML:AttachmentName><edXML:ContentType>text/plain</edXML:ContentType><edXML:Content>SGVsbG8=</edXML:Content></edXML:Attachment></edXML:AttachmentEncoded></edXML:edXMLBody>
</edXML>
<!-- trailing comment -->
"#
    )
}

fn xmlsec1() -> Command {
    Command::new("xmlsec1")
}

/// Signs `template` with xmlsec1 and the given key and certificate files.
fn xmlsec1_sign(dir: &Path, name: &str, template: &str, key: &Path, cert: &Path) -> Vec<u8> {
    let t = dir.join(format!("{name}.tmpl.xml"));
    let out = dir.join(format!("{name}.xml"));
    std::fs::write(&t, template).unwrap();
    run_ok(
        xmlsec1()
            .arg("--sign")
            .arg("--privkey-pem")
            .arg(format!("{},{}", key.display(), cert.display()))
            .arg("--output")
            .arg(&out)
            .arg(&t),
    );
    std::fs::read(out).unwrap()
}

/// Whether `xmlsec1 --verify` accepts the packet against the trust anchor `ca`.
fn xmlsec1_verifies(dir: &Path, name: &str, packet: &[u8], ca: &Path) -> bool {
    let f = dir.join(format!("{name}.check.xml"));
    std::fs::write(&f, packet).unwrap();
    xmlsec1()
        .arg("--verify")
        .arg("--trusted-pem")
        .arg(ca)
        .arg(&f)
        .output()
        .unwrap()
        .status
        .success()
}

/// `lienthong verify` on the packet: (exit success, first line of output).
fn cli_verify(hub: &TestHub, packet: &[u8], extra: &[&str]) -> (bool, String) {
    let f = hub.path("verify-me.edxml");
    std::fs::write(&f, packet).unwrap();
    let out = Command::new(BIN)
        .arg("verify")
        .arg(&f)
        .arg("--trust")
        .arg(hub.path("certs/trust"))
        .arg("--agencies")
        .arg(&hub.agencies)
        .args(extra)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        text.lines().next().unwrap_or("").to_owned(),
    )
}

fn dev_ca(hub: &TestHub) -> Ca {
    Ca::load_dev(&PkiPaths::new(hub.path("certs"))).unwrap()
}

/// Writes a (cert, key) PEM pair under the hub's dir; returns the paths.
fn write_pair(hub: &TestHub, name: &str, pair: (String, String)) -> (PathBuf, PathBuf) {
    let (c, k) = (
        hub.path(&format!("{name}.pem")),
        hub.path(&format!("{name}.key")),
    );
    std::fs::write(&c, pair.0).unwrap();
    std::fs::write(&k, pair.1).unwrap();
    (c, k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_signed_by_xmlsec1_verify_in_the_hub() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let now = OffsetDateTime::now_utc() - Duration::hours(1);
    let rsa = write_pair(
        &hub,
        "rsa-signing",
        dev_ca(&hub)
            .issue_signing(A, SigningKey::Rsa2048, now, 30)
            .unwrap(),
    );
    let ec = hub.signing(A);
    let a = hub.client(A, HttpVersion::Http2);
    let b = hub.client(B, HttpVersion::Http1);
    let mut n = 0;
    let mut want = Vec::new();
    for c14n in ["", C14N, C14N_COMMENTS, EXC, EXC_COMMENTS] {
        for digest in [SHA1, SHA256] {
            for (method, (cert, key), name) in [
                (RSA_SHA1, &rsa, "rsa-sha1"),
                (RSA_SHA256, &rsa, "rsa-sha256"),
                (ECDSA_SHA256, &ec, "ecdsa-sha256"),
            ] {
                n += 1;
                let doc_id = format!("{A},2026/11/28,{n}/XS");
                let t = template(A, B, &doc_id, c14n, method, digest);
                let signed = xmlsec1_sign(hub.dir.path(), &format!("x{n}"), &t, key, cert);
                let what = format!("xmlsec1 {name} c14n={c14n:?} digest={digest}");
                let (ok, line) = cli_verify(&hub, &signed, &[]);
                assert!(ok, "{what}: lienthong verify says {line}");
                assert!(
                    line.starts_with(&format!("verified: {name}")),
                    "{what}: {line}"
                );
                let r = submit(&a, signed).await;
                assert_eq!(r.status, StatusCode::CREATED, "{what}: {:?}", r.json());
                want.push(r.json()["id"].as_str().unwrap().to_owned());
            }
        }
    }
    let items = inbox(&b, "limit=100").await;
    assert_eq!(items.len(), want.len());
    for i in &items {
        assert_eq!(i["verdict"], "verified", "{i}");
        assert_eq!(i["signer"], A);
    }
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_signed_by_lienthong_pass_xmlsec1() {
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    let ca = hub.path("certs/ca.pem");
    let now = OffsetDateTime::now_utc() - Duration::hours(1);
    let rsa = write_pair(
        &hub,
        "rsa-signing",
        dev_ca(&hub)
            .issue_signing(A, SigningKey::Rsa2048, now, 30)
            .unwrap(),
    );
    let ec = hub.signing(A);
    // A small packet and one with a 1 MiB attachment, with an RSA and a P-256 key.
    for (size, (cert, key), alg) in [
        (0usize, &rsa, "rsa-sha256"),
        (0, &ec, "ecdsa-sha256"),
        (1 << 20, &rsa, "rsa-sha256"),
        (1 << 20, &ec, "ecdsa-sha256"),
    ] {
        let unsigned = hub.path("unsigned.edxml");
        std::fs::write(&unsigned, packet(A, &[B], "LS-1", &noise(size, 9))).unwrap();
        let out = hub.path("signed.edxml");
        run_ok(
            Command::new(BIN)
                .arg("sign")
                .arg(&unsigned)
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key)
                .arg("-o")
                .arg(&out),
        );
        let signed = std::fs::read(&out).unwrap();
        assert!(
            xmlsec1_verifies(hub.dir.path(), "ls", &signed, &ca),
            "xmlsec1 refuses lienthong's {alg} signature ({size} byte attachment)"
        );
        let (ok, line) = cli_verify(&hub, &signed, &[]);
        assert!(
            ok && line.starts_with(&format!("verified: {alg}")),
            "{line}"
        );
    }
    // Asking for an algorithm the key cannot do is an error, not a silent switch.
    let out = Command::new(BIN)
        .args(["sign", "--algorithm", "rsa-sha256", "--cert"])
        .arg(&ec.0)
        .arg("--key")
        .arg(&ec.1)
        .arg(hub.path("unsigned.edxml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Signing twice is refused.
    let out = Command::new(BIN)
        .args(["sign", "--cert"])
        .arg(&ec.0)
        .arg("--key")
        .arg(&ec.1)
        .arg(hub.path("signed.edxml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already carries a Signature"));
}

/// Replaces the first occurrence of `from` after byte `after` with `to` (same length).
fn tamper(packet: &[u8], after: &str, from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let text = String::from_utf8(packet.to_vec()).unwrap();
    let start = text
        .find(after)
        .unwrap_or_else(|| panic!("{after} not found"));
    let at = start + text[start..].find(from).unwrap();
    let mut out = text.into_bytes();
    out[at..at + from.len()].copy_from_slice(to.as_bytes());
    out
}

/// Changes the base64 character `back` characters before the end of the element's text.
fn tamper_b64(packet: &[u8], element: &str, back: usize) -> Vec<u8> {
    let text = String::from_utf8(packet.to_vec()).unwrap();
    let end = text.find(&format!("</{element}>")).unwrap();
    let at = end - back;
    let mut out = text.into_bytes();
    out[at] = if out[at] == b'A' { b'B' } else { b'A' };
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_packets_are_refused_with_the_right_code() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let ca = hub.path("certs/ca.pem");
    let now = OffsetDateTime::now_utc() - Duration::hours(1);
    let (cert, key) = write_pair(
        &hub,
        "rsa-signing",
        dev_ca(&hub)
            .issue_signing(A, SigningKey::Rsa2048, now, 30)
            .unwrap(),
    );
    let signer = lienthong::dsig::Signer::load(&cert, &key).unwrap();
    let good = signer
        .sign(&packet(A, &[B], "T-1", &noise(3000, 4)))
        .unwrap();
    assert!(xmlsec1_verifies(hub.dir.path(), "good", &good, &ca));

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "one byte of a header field",
            tamper(&good, "<edXML:Subject>", "thử", "thữ"),
            "digest_mismatch",
        ),
        (
            "one byte of the attachment",
            tamper_b64(&good, "edXML:ContentTransferEncoded", 200),
            "digest_mismatch",
        ),
        (
            "one byte of the SignatureValue",
            tamper_b64(&good, "SignatureValue", 40),
            "signature_invalid",
        ),
        (
            "one byte of the certificate's CA signature",
            tamper_b64(&good, "X509Certificate", 20),
            "cert_untrusted",
        ),
        (
            "the signed DigestValue",
            tamper_b64(&good, "DigestValue", 8),
            // The packet no longer matches the (changed) digest; checked before SignedInfo.
            "digest_mismatch",
        ),
        (
            "a second SignedInfo (signature wrapping)",
            String::from_utf8(good.clone())
                .unwrap()
                .replacen("</SignedInfo>", "</SignedInfo><SignedInfo></SignedInfo>", 1)
                .into_bytes(),
            "malformed_signature",
        ),
        (
            "an unsupported digest algorithm",
            tamper(&good, "<DigestMethod", "xmlenc#sha256", "xmlenc#sha512"),
            "algorithm_unsupported",
        ),
        (
            "the certificate's base64",
            tamper(
                &good,
                "<X509Certificate>",
                "<X509Certificate>M",
                "<X509Certificate>!",
            ),
            "malformed_signature",
        ),
    ];
    let a = hub.client(A, HttpVersion::Auto);
    for (what, bad, code) in &cases {
        assert!(
            !xmlsec1_verifies(hub.dir.path(), "bad", bad, &ca),
            "xmlsec1 accepts a packet with {what} changed"
        );
        let (ok, line) = cli_verify(&hub, bad, &[]);
        assert!(!ok && line.starts_with(code), "{what}: verify says {line}");
        let r = submit(&a, bad.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{what}");
        assert_eq!(error_code(&r), *code, "{what}: {:?}", r.json());
    }
    // Nothing of it was stored; the good packet still goes through.
    let b = hub.client(B, HttpVersion::Auto);
    assert!(inbox(&b, "").await.is_empty());
    assert_eq!(submit(&a, good).await.status, StatusCode::CREATED);
    // Unsigned: refused under `require`.
    let r = submit(&a, packet(A, &[B], "T-2", b"")).await;
    assert_eq!(error_code(&r), "signature_missing");
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signers_are_refused_with_their_codes() {
    let mut hub = TestHub::start(
        SMALL_DIRECTORY,
        // The CRL file does not exist yet: logged and counted, never fatal.
        "[signature]\ncrl_files = [\"{DIR}/crl/revoked.pem\"]\n",
    );
    let crl_path = hub.path("crl/revoked.pem");
    let metrics = ops_metrics(&hub);
    assert!(
        metrics.contains("lienthong_crl_load_errors_total 1"),
        "{metrics}"
    );

    let ca = dev_ca(&hub);
    let now = OffsetDateTime::now_utc();
    let ec = SigningKey::EcdsaP256;
    let expired = ca
        .issue_signing(A, ec, now - Duration::days(800), 365)
        .unwrap();
    let not_yet = ca
        .issue_signing(A, ec, now + Duration::days(10), 365)
        .unwrap();
    let (other_ca, _, _) = Ca::generate("another CA").unwrap();
    let foreign = other_ca
        .issue_signing(A, ec, now - Duration::hours(1), 30)
        .unwrap();
    let no_usage = ca
        .issue_signing_with(
            A,
            ec,
            now - Duration::hours(1),
            30,
            vec![rcgen::KeyUsagePurpose::KeyAgreement],
        )
        .unwrap();
    let revoked = ca
        .issue_signing(A, ec, now - Duration::hours(1), 30)
        .unwrap();
    let b_cert = (
        std::fs::read_to_string(hub.signing(B).0).unwrap(),
        std::fs::read_to_string(hub.signing(B).1).unwrap(),
    );

    let a = hub.client(A, HttpVersion::Auto);
    let sign_with = |pair: &(String, String), id: &str| {
        lienthong::dsig::Signer::from_pem(pair.0.as_bytes(), pair.1.as_bytes())
            .unwrap()
            .sign(&packet(A, &[B], id, b""))
            .unwrap()
    };
    let cases = [
        ("expired", &expired, "cert_expired"),
        ("not yet valid", &not_yet, "cert_expired"),
        ("from another CA", &foreign, "cert_untrusted"),
        ("without a signing key usage", &no_usage, "cert_untrusted"),
        ("another agency's", &b_cert, "signer_not_sender"),
    ];
    for (n, (what, pair, code)) in cases.iter().enumerate() {
        let r = submit(&a, sign_with(pair, &format!("C-{n}"))).await;
        assert_eq!(error_code(&r), *code, "{what} certificate: {:?}", r.json());
    }
    // Valid until its CRL arrives (a SIGHUP reloads CRLs with the directory).
    let r = submit(&a, sign_with(&revoked, "C-R1")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    std::fs::create_dir_all(crl_path.parent().unwrap()).unwrap();
    std::fs::write(&crl_path, ca.crl_revoking(&[&revoked.0]).unwrap()).unwrap();
    hub.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = submit(&a, sign_with(&revoked, "C-R2")).await;
        if error_code(&r) == "cert_revoked" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", r.json());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The CRL revokes only that certificate: A's own dev certificate still signs.
    let r = submit(&a, hub.packet(A, &[B], "C-OK", b"")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    // An unreadable CRL on reload: counted, and the hub keeps verifying.
    std::fs::write(&crl_path, "not a CRL").unwrap();
    hub.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ops_metrics(&hub).contains("lienthong_crl_load_errors_total 2") {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = submit(&a, hub.packet(A, &[B], "C-OK2", b"")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_pins_decide_which_certificates_sign_for_an_agency() {
    // A's dev certificate (CN = A) is replaced by a pinned one with another CN.
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let ca = dev_ca(&hub);
    let pinned = ca
        .issue_signing(
            "Nguyễn Văn A (token)",
            SigningKey::EcdsaP256,
            OffsetDateTime::now_utc() - Duration::hours(1),
            30,
        )
        .unwrap();
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pinned.0.as_bytes()).unwrap();
    let fp = lienthong::digest::sha256_hex(&der);
    let a = hub.client(A, HttpVersion::Auto);
    let by_pinned = lienthong::dsig::Signer::from_pem(pinned.0.as_bytes(), pinned.1.as_bytes())
        .unwrap()
        .sign(&packet(A, &[B], "P-1", b""))
        .unwrap();
    // Before the pin, its CN is not A's OrganId.
    let r = submit(&a, by_pinned.clone()).await;
    assert_eq!(error_code(&r), "signer_not_sender", "{:?}", r.json());
    let dir = SMALL_DIRECTORY.replacen(
        "name = \"Sở A\"",
        &format!("name = \"Sở A\"\nsigning_cert_sha256 = [\"{fp}\"]"),
        1,
    );
    std::fs::write(&hub.agencies, dir).unwrap();
    hub.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = submit(&a, by_pinned.clone()).await;
        if r.status == StatusCode::CREATED {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", r.json());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // With a pin, only pinned certificates sign for A: its CN = A certificate no longer does.
    let r = submit(&a, hub.packet(A, &[B], "P-2", b"")).await;
    assert_eq!(error_code(&r), "signer_not_sender", "{:?}", r.json());
    // `lienthong verify` applies the same rule from the directory file.
    let (ok, line) = cli_verify(&hub, &by_pinned, &[]);
    assert!(ok, "{line}");
    let (ok, line) = cli_verify(&hub, &hub.packet(A, &[B], "P-3", b""), &[]);
    assert!(!ok && line.starts_with("signer_not_sender"), "{line}");
    hub.stop();
}

#[test]
fn xmlsec1_agrees_the_2019_sample_was_changed_after_signing() {
    // The real packet's Signature has no xmldsig namespace, so xmlsec1 cannot see it; with
    // the namespace added (outside what the digest covers) it checks the same reference.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/edxml/received-2019_vpcp-test.edxml");
    let body = std::fs::read_to_string(&sample).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("s.xml");
    std::fs::write(
        &f,
        body.replacen(
            "<Signature>",
            "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">",
            1,
        ),
    )
    .unwrap();
    let out = xmlsec1()
        .args(["--verify", "--insecure"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data and digest do not match"), "{err}");
    let verdict = lienthong::dsig::verify(
        body.as_bytes(),
        &lienthong::dsig::TrustStore::empty(),
        std::time::SystemTime::now(),
    )
    .unwrap_err();
    assert_eq!(verdict.code.as_str(), "digest_mismatch");
}

fn ops_metrics(hub: &TestHub) -> String {
    hub.metrics_text()
}
