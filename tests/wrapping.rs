//! Signature wrapping and one-reading attacks, differential against xmlsec1.
//!
//! Each variant starts from a packet agency A signed, changes what a recipient would read, and
//! tries to make the change look signed. The rule checked: the hub never accepts what xmlsec1
//! refuses, and refuses more only where a documented rule of ours says so (docs/security.md:
//! comments inside the Signature, an `Object`, elements outside XML-DSig). A property test then
//! changes every text node, attribute value and element name outside the Signature, one at a
//! time, and checks that verification refuses each.

mod common;

use std::path::Path;
use std::process::Command;

use aws_lc_rs::digest;
use base64::Engine;
use common::*;
use http::StatusCode;
use lienthong::client::HttpVersion;
use lienthong::dsig::c14n::{self, C14n, Subset};
use lienthong::pki::{Ca, PkiPaths, SigningKey};
use time::{Duration, OffsetDateTime};

const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The digest `lienthong sign` (exclusive C14N, SHA-256) would put in the Reference of `doc`.
fn reference_digest(doc: &[u8]) -> String {
    let text = std::str::from_utf8(doc).unwrap();
    let sig = text.find("<Signature").expect("a Signature");
    let m = C14n::from_uri(C14n::EXCLUSIVE, None).unwrap();
    let mut ctx = digest::Context::new(&digest::SHA256);
    c14n::canonicalize(doc, Subset::Document { exclude: Some(sig) }, &m, &mut |b| {
        ctx.update(b)
    })
    .unwrap();
    b64(ctx.finish().as_ref())
}

fn xmlsec1_verifies(dir: &Path, name: &str, packet: &[u8], ca: &Path) -> bool {
    let f = dir.join(format!("{name}.xml"));
    std::fs::write(&f, packet).unwrap();
    Command::new("xmlsec1")
        .arg("--verify")
        .arg("--trusted-pem")
        .arg(ca)
        .arg(&f)
        .output()
        .expect("xmlsec1 is installed (.ci/run installs it)")
        .status
        .success()
}

/// Replaces the first occurrence of `from`, which must exist.
fn once(s: &str, from: &str, to: &str) -> String {
    assert!(s.contains(from), "{from:?} not found");
    s.replacen(from, to, 1)
}

/// What the hub may do beyond xmlsec1: refuse by one of our own rules, with this code.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// Both must refuse (the hub with this code).
    BothRefuse(&'static str),
    /// xmlsec1 accepts; the hub refuses by a documented rule, with this code.
    StricterRule(&'static str),
    /// Both accept.
    BothAccept,
}

/// The packet to attack: `m` (changed or as signed), the digest `d` of `m`, and the
/// `real` DigestValue of the signed packet.
struct Forgery {
    m: String,
    d: String,
    real: String,
}

impl Forgery {
    /// SignedInfo of `m` as it stands.
    fn signed_info(&self) -> &str {
        let i = self.m.find("<SignedInfo>").unwrap();
        let j = self.m.find("</SignedInfo>").unwrap() + "</SignedInfo>".len();
        &self.m[i..j]
    }
    fn signature(&self) -> &str {
        let i = self.m.find("<Signature").unwrap();
        let j = self.m.find("</Signature>").unwrap() + "</Signature>".len();
        &self.m[i..j]
    }
    fn dv(&self) -> String {
        format!("<DigestValue>{}</DigestValue>", self.real)
    }
}

fn digest_value(s: &str) -> String {
    let i = s.find("<DigestValue>").unwrap() + "<DigestValue>".len();
    let j = s[i..].find("</DigestValue>").unwrap() + i;
    s[i..j].to_owned()
}

type Attack = fn(&Forgery) -> String;

/// (what, whether the Subject is forged, how the packet is changed, what must happen).
fn attacks() -> Vec<(&'static str, bool, Attack, Expect)> {
    use Expect::*;
    const MALFORMED: Expect = BothRefuse("malformed_signature");
    vec![
        (
            "control: the packet as signed",
            false,
            |f| f.m.clone(),
            BothAccept,
        ),
        (
            "a Reference with the forged digest after KeyInfo (the reported attack)",
            true,
            |f| {
                once(
                    &f.m,
                    "</Signature>",
                    &format!(
                        "<Reference><DigestValue>{}</DigestValue></Reference></Signature>",
                        f.d
                    ),
                )
            },
            MALFORMED,
        ),
        (
            "a Reference inside KeyInfo",
            true,
            |f| {
                once(
                    &f.m,
                    "</KeyInfo>",
                    &format!(
                        "<Reference URI=\"\"><DigestValue>{}</DigestValue></Reference></KeyInfo>",
                        f.d
                    ),
                )
            },
            MALFORMED,
        ),
        (
            "an Object holding a copy of SignedInfo with the forged digest",
            true,
            |f| {
                let copy = f.signed_info().replace(&f.real, &f.d);
                once(
                    &f.m,
                    "</Signature>",
                    &format!("<Object>{copy}</Object></Signature>"),
                )
            },
            MALFORMED,
        ),
        (
            "the signed SignedInfo moved into an Object, a forged one in its place",
            true,
            |f| {
                let original = f.signed_info().to_owned();
                let v = once(&f.m, &original, &original.replace(&f.real, &f.d));
                once(
                    &v,
                    "</Signature>",
                    &format!("<Object>{original}</Object></Signature>"),
                )
            },
            MALFORMED,
        ),
        (
            "a second SignedInfo with the forged digest",
            true,
            |f| {
                let forged = f.signed_info().replace(&f.real, &f.d);
                once(
                    &f.m,
                    "<SignatureValue>",
                    &format!("{forged}<SignatureValue>"),
                )
            },
            MALFORMED,
        ),
        (
            "a second Signature with the forged digest in the body",
            true,
            |f| {
                let forged = f.signature().replace(&f.real, &f.d);
                once(
                    &f.m,
                    "</edXML:edXMLBody>",
                    &format!("{forged}</edXML:edXMLBody>"),
                )
            },
            BothRefuse("digest_mismatch"),
        ),
        (
            "a DigestValue in another namespace beside the real one",
            true,
            |f| {
                once(
                    &f.m,
                    "</Reference>",
                    &format!(
                        "<ds:DigestValue xmlns:ds=\"urn:evil\">{}</ds:DigestValue></Reference>",
                        f.d
                    ),
                )
            },
            MALFORMED,
        ),
        (
            "two DigestValues, the forged one first",
            true,
            |f| {
                once(
                    &f.m,
                    &f.dv(),
                    &format!("<DigestValue>{}</DigestValue>{}", f.d, f.dv()),
                )
            },
            MALFORMED,
        ),
        (
            "a look-alike SignedInfo in another default namespace",
            true,
            |f| {
                once(
                    &f.m,
                    "<SignedInfo>",
                    &format!(
                        "<SignedInfo xmlns=\"urn:evil\"><Reference><DigestValue>{}</DigestValue></Reference></SignedInfo><SignedInfo xmlns=\"{DSIG}\">",
                        f.d
                    ),
                )
            },
            MALFORMED,
        ),
        // Unchanged packet: the digest split by a comment still denotes the same value and
        // the comment is not part of canonical SignedInfo, so xmlsec1 accepts; our rule
        // (nothing but XML-DSig in a Signature) refuses.
        (
            "a DigestValue split by a comment",
            false,
            |f| {
                once(
                    &f.m,
                    &f.dv(),
                    &format!(
                        "<DigestValue>{}<!-- split -->{}</DigestValue>",
                        &f.real[..10],
                        &f.real[10..]
                    ),
                )
            },
            StricterRule("malformed_signature"),
        ),
        (
            "whitespace inside DigestValue (changes the signed SignedInfo)",
            false,
            |f| {
                once(
                    &f.m,
                    &f.dv(),
                    &format!("<DigestValue>\n  {}\n</DigestValue>", f.real),
                )
            },
            BothRefuse("signature_invalid"),
        ),
        (
            "edXML content hidden in an Object",
            false,
            |f| {
                once(
                    &f.m,
                    "</Signature>",
                    &format!(
                        "<Object><edXML:From xmlns:edXML=\"{}\"><edXML:OrganId>{C}</edXML:OrganId></edXML:From></Object></Signature>",
                        lienthong::edxml::NAMESPACE
                    ),
                )
            },
            StricterRule("malformed_signature"),
        ),
        (
            "a From element hidden after KeyInfo",
            false,
            |f| {
                once(
                    &f.m,
                    "</KeyInfo>",
                    &format!("</KeyInfo><From><OrganId>{C}</OrganId></From>"),
                )
            },
            MALFORMED,
        ),
        (
            "a DigestValue inside an extra Transform",
            true,
            |f| {
                once(
                    &f.m,
                    "<DigestMethod",
                    &format!(
                        "<Transform Algorithm=\"{DSIG}enveloped-signature\"><DigestValue>{}</DigestValue></Transform><DigestMethod",
                        f.d
                    ),
                )
            },
            MALFORMED,
        ),
        (
            "two SignatureValues",
            false,
            |f| {
                once(
                    &f.m,
                    "</SignatureValue>",
                    "</SignatureValue><SignatureValue>AAAA</SignatureValue>",
                )
            },
            MALFORMED,
        ),
        // A character reference in DigestValue denotes the same characters: still signed.
        (
            "a character reference in DigestValue",
            false,
            |f| {
                once(
                    &f.m,
                    &f.dv(),
                    &format!(
                        "<DigestValue>&#{};{}</DigestValue>",
                        f.real.as_bytes()[0],
                        &f.real[1..]
                    ),
                )
            },
            BothAccept,
        ),
        // Two senders: the first From names C, the last A (the caller).
        (
            "two From elements",
            false,
            |f| {
                once(
                    &f.m,
                    "<edXML:From>",
                    &format!(
                        "<edXML:From><edXML:OrganId>{C}</edXML:OrganId></edXML:From><edXML:From>"
                    ),
                )
            },
            BothRefuse("duplicate_field"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapping_variants_agree_with_xmlsec1() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let ca = hub.path("certs/ca.pem");
    let now = OffsetDateTime::now_utc() - Duration::hours(1);
    let ca_obj = Ca::load_dev(&PkiPaths::new(hub.path("certs"))).unwrap();
    let (c, k) = ca_obj
        .issue_signing(A, SigningKey::Rsa2048, now, 30)
        .unwrap();
    let (cert, key) = (hub.path("rsa.pem"), hub.path("rsa.key"));
    std::fs::write(&cert, c).unwrap();
    std::fs::write(&key, k).unwrap();
    let signer = lienthong::dsig::Signer::load(&cert, &key).unwrap();
    let a = hub.client(A, HttpVersion::Http2);

    let mut cases: Vec<(&str, String, Expect)> = Vec::new();
    for (n, (what, forged, attack, expect)) in attacks().into_iter().enumerate() {
        // A packet A signed, whose Subject says "Original n".
        let doc_id = format!("{A},2026/11/30,{n}/WR");
        let p = String::from_utf8(packet(A, &[B], &doc_id, b"attachment")).unwrap();
        let p = p.replace(
            &format!("Về việc thử nghiệm {doc_id}"),
            &format!("Original {n}"),
        );
        let signed = String::from_utf8(signer.sign(p.as_bytes()).unwrap()).unwrap();
        let real = digest_value(&signed);
        // The forgery: a recipient reads "FORGED" where the signer wrote "Original"; `d` is
        // the digest that would make the changed packet look signed.
        let m = if forged {
            once(&signed, &format!("Original {n}"), &format!("FORGED {n}"))
        } else {
            signed
        };
        let d = reference_digest(m.as_bytes());
        cases.push((what, attack(&Forgery { m, d, real }), expect));
    }
    assert!(cases.len() >= 17);

    let mut report = Vec::new();
    for (i, (what, body, expect)) in cases.into_iter().enumerate() {
        let xmlsec = xmlsec1_verifies(hub.dir.path(), &format!("w{i}"), body.as_bytes(), &ca);
        let r = submit(&a, body.into_bytes()).await;
        let code = error_code(&r);
        let accepted = r.status == StatusCode::CREATED;
        report.push(format!("{what}: xmlsec1={xmlsec} hub={} {code}", r.status));
        match expect {
            Expect::BothAccept => {
                assert!(xmlsec, "{what}: xmlsec1 refuses");
                assert!(accepted, "{what}: hub {} {code}", r.status);
            }
            Expect::BothRefuse(want) => {
                assert!(!xmlsec, "{what}: xmlsec1 accepts");
                assert!(!accepted, "{what}: the hub accepts what xmlsec1 refuses");
                assert_eq!(code, want, "{what}");
            }
            Expect::StricterRule(want) => {
                assert!(
                    xmlsec,
                    "{what}: xmlsec1 refuses (the rule would not be stricter)"
                );
                assert_eq!(code, want, "{what}");
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    hub.stop();
}

/// Every text node, attribute value and element name outside the Signature, changed one at a
/// time, makes verification fail.
#[test]
fn any_change_outside_the_signature_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_pem, _) = Ca::generate("property test CA").unwrap();
    let now = OffsetDateTime::now_utc() - Duration::hours(1);
    let (c, k) = ca.issue_signing(A, SigningKey::EcdsaP256, now, 30).unwrap();
    std::fs::write(dir.path().join("s.pem"), c).unwrap();
    std::fs::write(dir.path().join("s.key"), k).unwrap();
    let trust_dir = dir.path().join("trust");
    std::fs::create_dir_all(&trust_dir).unwrap();
    std::fs::write(trust_dir.join("ca.pem"), ca_pem).unwrap();
    let trust =
        lienthong::dsig::TrustStore::load(&trust_dir, &[], std::time::Duration::ZERO).unwrap();
    let signer =
        lienthong::dsig::Signer::load(&dir.path().join("s.pem"), &dir.path().join("s.key"))
            .unwrap();
    let unsigned = String::from_utf8(packet(A, &[B, C], "P-1", b"some attachment bytes")).unwrap();
    let unsigned = once(
        &unsigned,
        "<edXML:To>",
        "<edXML:To kind=\"main\" xml:lang=\"vi\">",
    );
    let signed = signer.sign(unsigned.as_bytes()).unwrap();
    let now = std::time::SystemTime::now();
    lienthong::dsig::verify(&signed, &trust, now).expect("the packet as signed verifies");

    let sig_start = find(&signed, b"<Signature");
    let sig_end = find(&signed, b"</Signature>") + "</Signature>".len();
    let mut checked = 0;
    for (start, len) in mutable_spans(&signed) {
        if start >= sig_start && start < sig_end {
            continue;
        }
        let mut m = signed.clone();
        // Change one character: a letter or digit becomes another; anything else gains one.
        let b = m[start];
        if b.is_ascii_alphanumeric() {
            m[start] = if b == b'Z' { b'Y' } else { b'Z' };
        } else {
            m.insert(start, b'Z');
        }
        let _ = len;
        assert!(
            lienthong::dsig::verify(&m, &trust, now).is_err(),
            "a change at byte {start} ({:?}) still verifies",
            String::from_utf8_lossy(&signed[start..(start + 20).min(signed.len())])
        );
        checked += 1;
    }
    assert!(checked > 40, "only {checked} places were changed");
}

fn find(h: &[u8], n: &[u8]) -> usize {
    h.windows(n.len()).position(|w| w == n).unwrap()
}

/// (offset, length) of every element name (start and end tag alike), attribute value and
/// non-empty text node.
fn mutable_spans(doc: &[u8]) -> Vec<(usize, usize)> {
    use quick_xml::Reader;
    use quick_xml::events::Event;
    let mut r = Reader::from_reader(doc);
    let mut out = Vec::new();
    loop {
        let pos = r.buffer_position() as usize;
        match r.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.name().as_ref().len();
                out.push((pos + 1, name));
                let raw = &doc[pos..r.buffer_position() as usize];
                // Attribute values: the first byte after each `="`.
                for (i, w) in raw.windows(2).enumerate() {
                    if w == b"=\"" && raw.get(i + 2).is_some_and(|b| *b != b'"') {
                        out.push((pos + i + 2, 1));
                    }
                }
            }
            Event::End(e) => out.push((pos + 2, e.name().as_ref().len())),
            Event::Text(t) if !t.iter().all(|b| b.is_ascii_whitespace()) => {
                let lead = t.iter().take_while(|b| b.is_ascii_whitespace()).count();
                out.push((pos + lead, t.len()));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}
