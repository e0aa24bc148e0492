//! Push signatures (docs/push.md) checked by an independent implementation: Python
//! `cryptography` verifies what `lienthong::webhook::sign` makes with an ECDSA P-256 and an
//! RSA hub key, and refuses it for another body.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use common::python;

use lienthong::pki::{Ca, SigningKey};

#[test]
fn python_cryptography_verifies_push_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = Ca::generate("push test CA").unwrap();
    let at = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let body = dir.path().join("body.xml");
    std::fs::write(&body, "<edXML>gói tin</edXML>").unwrap();
    let other = dir.path().join("other.xml");
    std::fs::write(&other, "<edXML>gói tin khác</edXML>").unwrap();
    for key in [SigningKey::EcdsaP256, SigningKey::Rsa2048] {
        let (cert, pem_key) = ca.issue_signing("lienthong hub", key, at, 30).unwrap();
        let cert_path = dir.path().join("hub.pem");
        std::fs::write(&cert_path, &cert).unwrap();
        let signer =
            lienthong::dsig::Signer::from_pem(cert.as_bytes(), pem_key.as_bytes()).unwrap();
        let h = lienthong::webhook::sign(
            &signer,
            "0000000000000042",
            &std::fs::read(&body).unwrap(),
            SystemTime::now(),
        )
        .unwrap();
        let check = |file: &Path| {
            Command::new(python())
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/webhook_verify.py"))
                .arg(&cert_path)
                .arg(&h.id)
                .arg(h.timestamp.to_string())
                .arg(&h.signature)
                .arg(file)
                .output()
                .unwrap()
        };
        let ok = check(&body);
        assert!(
            ok.status.success(),
            "{key:?}: {}",
            String::from_utf8_lossy(&ok.stdout)
        );
        assert!(
            !check(&other).status.success(),
            "{key:?}: another body verified"
        );
    }
}
