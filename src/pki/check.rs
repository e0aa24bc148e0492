//! `lienthong pki check`: the certificates and keys a configuration names, checked the way the
//! hub and its peers will use them, before the hub is started on them.
//!
//! Each finding says what is wrong in terms of its consequence ("agencies' TLS clients will
//! refuse it"), so an operator holding a freshly issued certificate knows what to ask the CA
//! for. Chains are built by rustls-webpki, the same code that accepts or refuses them at run
//! time, so `check` cannot pass a chain the hub would refuse.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use der::Decode;
use der::oid::ObjectIdentifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};

use crate::config::Config;

const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

/// How bad a finding is: errors make `pki check` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Error,
}

/// One thing found about one configured file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub level: Level,
    /// What the file is for, e.g. "TLS server certificate".
    pub item: String,
    pub path: String,
    pub message: String,
}

/// What to check against.
#[derive(Debug, Clone)]
pub struct Options {
    /// CA certificates the server and outbound client certificates must chain to (default:
    /// `[tls] client_ca`, as the same government CA usually issues both sides).
    pub anchors: Option<PathBuf>,
    /// A certificate expiring within this many days is a warning.
    pub warn_days: u64,
    pub now: SystemTime,
}

/// Findings for one item, in order.
struct Item<'a> {
    out: &'a mut Vec<Finding>,
    item: &'static str,
    path: String,
}

impl Item<'_> {
    fn push(&mut self, level: Level, message: impl Into<String>) {
        self.out.push(Finding {
            level,
            item: self.item.to_owned(),
            path: self.path.clone(),
            message: message.into(),
        });
    }
    fn error(&mut self, message: impl Into<String>) {
        self.push(Level::Error, message)
    }
    fn warn(&mut self, message: impl Into<String>) {
        self.push(Level::Warning, message)
    }
    fn ok(&mut self, message: impl Into<String>) {
        self.push(Level::Ok, message)
    }
}

fn item<'a>(out: &'a mut Vec<Finding>, what: &'static str, path: &Path) -> Item<'a> {
    Item {
        out,
        item: what,
        path: path.display().to_string(),
    }
}

/// Which TLS side a certificate serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// Checks every certificate, key, trust store and CRL the configuration names.
pub fn check(config: &Config, opts: &Options) -> Vec<Finding> {
    crate::tls::install_provider();
    let mut out = Vec::new();
    let anchor_path = opts
        .anchors
        .clone()
        .unwrap_or_else(|| config.tls.client_ca.clone());
    let anchors = load_anchors(&anchor_path);
    let tls_chain = Chain {
        anchors: &anchors,
        anchor_path: &anchor_path,
    };
    let (t, o) = (&config.tls, &config.outbound);
    endpoint(
        &mut out,
        "TLS server certificate",
        &t.cert,
        &t.key,
        Side::Server,
        &tls_chain,
        opts,
    );
    ca_file(&mut out, "client CA", &t.client_ca, opts);
    hub_signing(&mut out, config, opts);
    let outbound = "outbound client certificate";
    if !o.client_cert.exists() && !o.client_key.exists() {
        item(&mut out, outbound, &o.client_cert).warn(
            "absent: push delivery and federation need it (`lienthong pki csr` makes its request)",
        );
    } else {
        endpoint(
            &mut out,
            outbound,
            &o.client_cert,
            &o.client_key,
            Side::Client,
            &tls_chain,
            opts,
        );
    }
    trust_dir(
        &mut out,
        "signature trust store",
        &config.signature.trust_dir,
        opts,
    );
    let pdf_trust = &config.pdf_signature.trust_dir;
    if !pdf_trust.as_os_str().is_empty() {
        trust_dir(&mut out, "PDF signature trust store", pdf_trust, opts);
    }
    let crls = config.signature.crl_files.iter();
    for path in crls.chain(&config.pdf_signature.crl_files) {
        let mut it = item(&mut out, "CRL", path);
        match crate::dsig::read_crls(path) {
            Ok(list) => it.ok(format!("{} revocation list(s) read", list.len())),
            Err(why) => it.error(format!("cannot be used: {why}")),
        }
    }
    development(&mut out, config);
    out
}

/// Trust anchors for the TLS chains, or why there are none.
struct Chain<'a> {
    anchors: &'a Result<Vec<TrustAnchor<'static>>, String>,
    anchor_path: &'a Path,
}

fn load_anchors(path: &Path) -> Result<Vec<TrustAnchor<'static>>, String> {
    let certs = crate::tls::load_certs(path).map_err(|e| e.to_string())?;
    certs
        .iter()
        .map(|c| {
            webpki::anchor_from_trusted_cert(c)
                .map(|a| a.to_owned())
                .map_err(|e| format!("{}: not a usable CA certificate: {e:?}", path.display()))
        })
        .collect()
}

/// A TLS certificate and its key: pair, validity, usages, names, chain.
fn endpoint(
    out: &mut Vec<Finding>,
    what: &'static str,
    cert_path: &Path,
    key_path: &Path,
    side: Side,
    chain: &Chain<'_>,
    opts: &Options,
) {
    let mut it = item(out, what, cert_path);
    let certs = match crate::tls::load_certs(cert_path) {
        Ok(c) => c,
        Err(e) => return it.error(format!("cannot be read: {e}")),
    };
    let Some(leaf) = parse(&mut it, &certs[0]) else {
        return;
    };
    if let Err(why) = key_matches(&certs, key_path) {
        it.error(why);
    }
    let fine = validity(&mut it, &leaf, opts);
    let fine = usages(&mut it, &leaf, side) && fine;
    let names = if side == Side::Server {
        let names = subject_alt_names(&leaf);
        if names.is_empty() {
            it.error("no subjectAltName: TLS clients match the hub's name only against it (the CN is ignored); ask the CA for the DNS name (and IP) agencies connect to");
        }
        format!(", names: {}", names.join(", "))
    } else {
        String::new()
    };
    let fine = match tls_chain(&certs, side, chain, opts.now) {
        Ok(()) => fine,
        Err(why) => {
            it.error(why);
            false
        }
    };
    if fine {
        it.ok(format!(
            "{}, issued by {}, key matches, chains to {}{names}",
            leaf.tbs_certificate().subject(),
            leaf.tbs_certificate().issuer(),
            chain.anchor_path.display()
        ));
    }
}

fn parse(it: &mut Item<'_>, der: &[u8]) -> Option<Certificate> {
    match Certificate::from_der(der) {
        Ok(c) => Some(c),
        Err(e) => {
            it.error(format!("not a valid X.509 certificate: {e}"));
            None
        }
    }
}

/// Whether `key_path` holds the private key of the chain's first certificate.
fn key_matches(certs: &[CertificateDer<'static>], key_path: &Path) -> Result<(), String> {
    let key = crate::tls::load_key(key_path).map_err(|e| format!("key {e}"))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| format!("key {}: not usable for TLS: {e}", key_path.display()))?;
    rustls::sign::CertifiedKey::new(certs.to_vec(), signing)
        .keys_match()
        .map_err(|_| {
            format!(
                "the key {} does not belong to this certificate (a key from another request?)",
                key_path.display()
            )
        })
}

/// Not yet valid and expired are errors; expiring within `warn_days` a warning.
fn validity(it: &mut Item<'_>, cert: &Certificate, opts: &Options) -> bool {
    let v = cert.tbs_certificate().validity();
    let (from, until) = (v.not_before.to_system_time(), v.not_after.to_system_time());
    if from > opts.now {
        it.error(format!("not valid before {}", date(from)));
        return false;
    }
    match until.duration_since(opts.now) {
        Err(_) => {
            it.error(format!("expired on {}", date(until)));
            false
        }
        Ok(left) if left < Duration::from_secs(opts.warn_days * 86_400) => {
            it.warn(format!(
                "expires on {}, in {} days: renew it now",
                date(until),
                left.as_secs() / 86_400
            ));
            true
        }
        Ok(_) => true,
    }
}

fn date(t: SystemTime) -> String {
    time::OffsetDateTime::from(t).date().to_string()
}

/// Key usage and extended key usage for a TLS side.
fn usages(it: &mut Item<'_>, cert: &Certificate, side: Side) -> bool {
    let mut fine = true;
    if let Ok(Some((_, ku))) = cert.tbs_certificate().get_extension::<KeyUsage>()
        && !ku.digital_signature()
    {
        it.error("key usage lacks digitalSignature: TLS 1.3 handshakes sign with this key");
        fine = false;
    }
    let (oid, name, peer) = match side {
        Side::Server => (SERVER_AUTH, "serverAuth", "agencies' TLS clients"),
        Side::Client => (CLIENT_AUTH, "clientAuth", "agency endpoints and peer hubs"),
    };
    match cert.tbs_certificate().get_extension::<ExtendedKeyUsage>() {
        Ok(Some((_, eku))) if !eku.0.contains(&oid) => {
            it.error(format!(
                "extended key usage lacks {name}: {peer} will refuse it"
            ));
            fine = false;
        }
        Ok(_) => {}
        Err(e) => {
            it.error(format!("unreadable extended key usage: {e}"));
            fine = false;
        }
    }
    fine
}

fn subject_alt_names(cert: &Certificate) -> Vec<String> {
    let Ok(Some((_, san))) = cert.tbs_certificate().get_extension::<SubjectAltName>() else {
        return Vec::new();
    };
    san.0
        .iter()
        .filter_map(|n| match n {
            GeneralName::DnsName(d) => Some(d.to_string()),
            GeneralName::IpAddress(ip) => match ip.as_bytes().len() {
                4 => <[u8; 4]>::try_from(ip.as_bytes())
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(ip.as_bytes())
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The chain from the file's certificates to the anchors, for this TLS side.
fn tls_chain(
    certs: &[CertificateDer<'static>],
    side: Side,
    chain: &Chain<'_>,
    now: SystemTime,
) -> Result<(), String> {
    let anchors = chain.anchors.as_ref().map_err(|e| {
        format!("chain not checked: the CA certificates cannot be read ({e}); give --ca")
    })?;
    let ee = webpki::EndEntityCert::try_from(&certs[0])
        .map_err(|e| format!("not usable as an end-entity certificate: {e:?}"))?;
    let usage = match side {
        Side::Server => webpki::KeyUsage::server_auth(),
        Side::Client => webpki::KeyUsage::client_auth(),
    };
    let time = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let found = ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        anchors,
        &certs[1..],
        time,
        usage,
        None,
        None,
    );
    found.map(|_| ()).map_err(|e| match e {
        webpki::Error::UnknownIssuer => format!(
            "does not chain to the CA certificates in {} (if the CA has intermediates, append them to the certificate file after the certificate itself)",
            chain.anchor_path.display()
        ),
        e => format!("chain to {} refused: {e:?}", chain.anchor_path.display()),
    })
}

/// A file of CA certificates: each must be a CA, in date.
fn ca_file(out: &mut Vec<Finding>, what: &'static str, path: &Path, opts: &Options) {
    let mut it = item(out, what, path);
    match crate::tls::load_certs(path) {
        Ok(certs) => ca_certs(&mut it, &certs, opts),
        Err(e) => it.error(format!("cannot be read: {e}")),
    }
}

fn ca_certs(it: &mut Item<'_>, certs: &[CertificateDer<'static>], opts: &Options) {
    for der in certs {
        let Some(cert) = parse(it, der) else { continue };
        let subject = cert.tbs_certificate().subject().to_string();
        let mut fine = validity(it, &cert, opts);
        match cert.tbs_certificate().get_extension::<BasicConstraints>() {
            Ok(Some((_, bc))) if bc.ca => {}
            _ => {
                it.error(format!("{subject} is not a CA certificate (basicConstraints cA is not set): nothing can chain to it"));
                fine = false;
            }
        }
        if let Ok(Some((_, ku))) = cert.tbs_certificate().get_extension::<KeyUsage>()
            && !ku.key_cert_sign()
        {
            it.error(format!("{subject}: key usage lacks keyCertSign"));
            fine = false;
        }
        if fine {
            let until = cert.tbs_certificate().validity().not_after.to_system_time();
            it.ok(format!("{subject}, CA, valid until {}", date(until)));
        }
    }
}

/// The hub's receipt and tree-head signing certificate.
fn hub_signing(out: &mut Vec<Finding>, config: &Config, opts: &Options) {
    let a = &config.audit;
    let mut it = item(out, "hub signing certificate", &a.signing_cert);
    let signer = match crate::dsig::Signer::load(&a.signing_cert, &a.signing_key) {
        Ok(s) => s,
        Err(e) => return it.error(format!("cannot sign receipts: {e}")),
    };
    let chain = signer.chain();
    let Some(leaf) = parse(&mut it, &chain[0]) else {
        return;
    };
    let mut fine = validity(&mut it, &leaf, opts);
    match leaf.tbs_certificate().get_extension::<KeyUsage>() {
        Ok(Some((_, ku))) if ku.digital_signature() || ku.non_repudiation() => {}
        _ => {
            it.error("key usage allows neither digitalSignature nor nonRepudiation: verifiers checking usages refuse its receipts");
            fine = false;
        }
    }
    let trust =
        crate::dsig::TrustStore::load(&config.signature.trust_dir, &[], Duration::from_secs(1));
    let chained = trust.map_err(|e| e.to_string()).and_then(|t| {
        let intermediates: Vec<Vec<u8>> = chain[1..].iter().map(|c| c.to_vec()).collect();
        t.check(&chain[0], &intermediates, opts.now)
            .map_err(|f| f.message)
    });
    if let Err(why) = chained {
        it.warn(format!("does not chain to the signature trust store ({why}): receipts verify with --hub-cert, but not against the CA"));
        fine = false;
    }
    if fine {
        it.ok(format!(
            "{}, key matches, chains to the signature trust store",
            leaf.tbs_certificate().subject()
        ));
    }
}

/// A trust-store directory: at least one certificate, each in date.
fn trust_dir(out: &mut Vec<Finding>, what: &'static str, dir: &Path, opts: &Options) {
    let mut it = item(out, what, dir);
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return it.error(format!("cannot be read: {e}")),
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let mut anchors = 0;
    for f in files.iter().filter(|f| f.is_file()) {
        let bytes = std::fs::read(f).unwrap_or_default();
        let certs: Vec<CertificateDer<'static>> = if bytes.starts_with(b"-----") {
            CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<_, _>>()
                .unwrap_or_default()
        } else {
            vec![CertificateDer::from(bytes)]
        };
        let mut file_it = item(it.out, what, f);
        if certs.is_empty() {
            file_it.warn("holds no certificate (ignored)");
        }
        anchors += certs.len();
        ca_certs(&mut file_it, &certs, opts);
    }
    if anchors == 0 {
        item(out, what, dir).error("no trust anchors: every signature would be cert_untrusted");
    }
}

/// With `[tls] dev_pki = false`, any certificate from the development CA is refused at start.
fn development(out: &mut Vec<Finding>, config: &Config) {
    let t = &config.tls;
    if t.dev_pki {
        item(out, "[tls] dev_pki", Path::new("")).warn(
            "true: the hub creates and accepts a development PKI; set dev_pki = false in production",
        );
        return;
    }
    for path in super::development_files(config) {
        item(out, "development CA", path)
            .error("issued by the development CA: the hub refuses it with [tls] dev_pki = false");
    }
}

/// Counts of errors and warnings, for the exit status and the summary line.
pub fn summary(findings: &[Finding]) -> (usize, usize) {
    let count = |l| findings.iter().filter(|f| f.level == l).count();
    (count(Level::Error), count(Level::Warning))
}
