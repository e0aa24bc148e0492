//! Finds the packet's `Signature` in `edXMLHeader` and reads what verification needs from it.
//!
//! Children are matched by local name within the Signature subtree: real packets put the
//! Signature in no namespace or in the edXML one (inherited from the root's default
//! namespace), others in the xmldsig namespace. What is signed is `SignedInfo` exactly as it
//! is written, so the leniency changes nothing about what the signature protects.

use base64::Engine;
use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use super::{DSIG_NS, SigCode, SigFailure};
use crate::edxml::NAMESPACE;
use crate::signature_model::{Cursor, DSIG11_NS, EXC_C14N_NS, Elem, NsRule};

/// One `Transform` of the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub algorithm: String,
    /// `InclusiveNamespaces/@PrefixList` of an exclusive canonicalization.
    pub prefix_list: Option<String>,
}

/// What the Signature element says.
#[derive(Debug, Default)]
pub struct Located {
    /// Byte offset of the `<` of the Signature start tag.
    pub signature_start: usize,
    /// Byte offset of the `<` of the SignedInfo start tag.
    pub signed_info_start: usize,
    pub c14n_method: String,
    pub c14n_prefix_list: Option<String>,
    pub signature_method: String,
    pub reference_uri: Option<String>,
    pub transforms: Vec<Transform>,
    pub digest_method: String,
    pub digest_value: Vec<u8>,
    pub signature_value: Vec<u8>,
    /// DER certificates from `KeyInfo/X509Data/X509Certificate`, in document order.
    pub certificates: Vec<Vec<u8>>,
}

fn malformed(msg: impl Into<String>) -> SigFailure {
    SigFailure::new(SigCode::Malformed, msg)
}

fn base64(field: &str, text: &str) -> Result<Vec<u8>, SigFailure> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(malformed(format!("{field} is empty")));
    }
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| malformed(format!("{field} is not valid base64: {e}")))
}

/// Where the Signature element's subtree is being read.
struct InSignature {
    /// The Signature's namespace (`None`: no namespace); its children must share it.
    ns: Option<Vec<u8>>,
    /// Open elements from the Signature down, each with its place in its content model.
    stack: Vec<(Elem, Cursor)>,
    text: String,
}

/// Whether an element whose namespace resolved to `ns` may stand as `e` in a Signature whose
/// own namespace is `sig_ns`.
fn ns_fits(e: Elem, ns: &ResolveResult<'_>, sig_ns: Option<&[u8]>) -> bool {
    let actual: Option<&[u8]> = match ns {
        ResolveResult::Bound(n) => Some(n.as_ref()),
        ResolveResult::Unbound => None,
        ResolveResult::Unknown(_) => return false,
    };
    match e.ns_rule() {
        NsRule::SameAsSignature => actual == sig_ns,
        NsRule::ExcC14n => actual == sig_ns || actual == Some(EXC_C14N_NS.as_bytes()),
        NsRule::Dsig11 => actual == Some(DSIG11_NS.as_bytes()),
    }
}

/// Checks an element's attributes against the model (namespace declarations aside) and
/// returns the values of the ones allowed.
fn attributes(e: Elem, start: &BytesStart<'_>) -> Result<Vec<(&'static [u8], String)>, SigFailure> {
    let mut out = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(|err| malformed(format!("unreadable attribute: {err}")))?;
        let key = a.key.as_ref();
        if key == b"xmlns" || key.starts_with(b"xmlns:") {
            continue;
        }
        let Some(name) = e.attributes().iter().find(|n| **n == key) else {
            return Err(malformed(format!(
                "attribute {} is not allowed on {e:?}",
                String::from_utf8_lossy(key)
            )));
        };
        let value = a
            .unescape_value()
            .map_err(|err| malformed(format!("unreadable attribute: {err}")))?;
        out.push((*name, value.trim().to_owned()));
    }
    Ok(out)
}

fn get(attrs: &[(&'static [u8], String)], name: &[u8]) -> Option<String> {
    attrs
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.clone())
}

impl InSignature {
    /// A child element opens inside the Signature.
    fn open(
        &mut self,
        out: &mut Located,
        pos: usize,
        ns: &ResolveResult<'_>,
        start: &BytesStart<'_>,
    ) -> Result<(), SigFailure> {
        let local = start.local_name().into_inner();
        let (parent, cursor) = self.stack.last_mut().expect("inside the Signature");
        let parent = *parent;
        let e = Elem::child_of(parent, local).ok_or_else(|| {
            malformed(format!(
                "element {} is out of place in {parent:?}: a Signature holds only the XML-DSig elements of this profile",
                String::from_utf8_lossy(local)
            ))
        })?;
        cursor.accept(parent, e).map_err(malformed)?;
        if !ns_fits(e, ns, self.ns.as_deref()) {
            return Err(malformed(format!(
                "{e:?} is in another namespace than its Signature"
            )));
        }
        let attrs = attributes(e, start)?;
        match (parent, e) {
            (Elem::SignedInfo, Elem::CanonicalizationMethod) => {
                out.c14n_method = get(&attrs, b"Algorithm").unwrap_or_default();
            }
            (Elem::CanonicalizationMethod, Elem::InclusiveNamespaces) => {
                out.c14n_prefix_list = get(&attrs, b"PrefixList");
            }
            (Elem::SignedInfo, Elem::SignatureMethod) => {
                out.signature_method = get(&attrs, b"Algorithm").unwrap_or_default();
            }
            (Elem::SignedInfo, Elem::Reference) => out.reference_uri = get(&attrs, b"URI"),
            (Elem::Transforms, Elem::Transform) => out.transforms.push(Transform {
                algorithm: get(&attrs, b"Algorithm").unwrap_or_default(),
                prefix_list: None,
            }),
            (Elem::Transform, Elem::InclusiveNamespaces) => {
                if let Some(t) = out.transforms.last_mut() {
                    t.prefix_list = get(&attrs, b"PrefixList");
                }
            }
            (Elem::Reference, Elem::DigestMethod) => {
                out.digest_method = get(&attrs, b"Algorithm").unwrap_or_default();
            }
            (Elem::Signature, Elem::SignedInfo) => out.signed_info_start = pos,
            _ => {}
        }
        self.stack.push((e, Cursor::default()));
        self.text.clear();
        Ok(())
    }

    /// The innermost open element closes; `true` when that was the Signature itself.
    fn close(&mut self, out: &mut Located) -> Result<bool, SigFailure> {
        let (e, cursor) = self.stack.pop().expect("inside the Signature");
        cursor.finish(e).map_err(malformed)?;
        match e {
            Elem::DigestValue => out.digest_value = base64("DigestValue", &self.text)?,
            Elem::SignatureValue => out.signature_value = base64("SignatureValue", &self.text)?,
            Elem::X509Certificate => out
                .certificates
                .push(base64("X509Certificate", &self.text)?),
            _ => {}
        }
        self.text.clear();
        Ok(self.stack.is_empty())
    }

    /// Character data inside the Signature: only elements that hold text may have any.
    fn text(&mut self, t: &str) -> Result<(), SigFailure> {
        let (e, _) = self.stack.last().expect("inside the Signature");
        if e.holds_text() {
            self.text.push_str(t);
            Ok(())
        } else if t.bytes().all(|b| b.is_ascii_whitespace()) {
            Ok(())
        } else {
            Err(malformed(format!("{e:?} may not hold text")))
        }
    }
}

/// Locates and reads the Signature, checking it against the profile's content model
/// ([`crate::signature_model`]). `Err` with [`SigCode::Missing`] when there is none.
pub fn locate(doc: &[u8]) -> Result<Located, SigFailure> {
    let mut reader = NsReader::from_reader(doc);
    reader.config_mut().check_end_names = true;
    let bad_xml = |e: quick_xml::Error| malformed(format!("the packet is not well-formed: {e}"));

    // Local names of open elements above the Signature (only the first three matter).
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut sig: Option<InSignature> = None;
    let mut found = false;
    let mut out = Located::default();
    loop {
        let pos = reader.buffer_position() as usize;
        let (ns, event) = reader.read_resolved_event().map_err(bad_xml)?;
        if let Some(s) = sig.as_mut() {
            if s.event(&mut out, pos, &ns, event)? {
                sig = None;
            }
            continue;
        }
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let local = e.local_name().into_inner();
                let in_header =
                    path.len() == 3 && path[1] == b"edXMLEnvelope" && path[2] == b"edXMLHeader";
                if in_header && local == b"Signature" {
                    if found {
                        return Err(malformed(
                            "edXMLHeader holds more than one Signature; exactly one is verified",
                        ));
                    }
                    found = true;
                    out.signature_start = pos;
                    sig = Some(InSignature::start(&ns, e, empty)?);
                } else if !empty {
                    path.push(if path.len() < 4 {
                        local.to_vec()
                    } else {
                        Vec::new()
                    });
                }
            }
            Event::End(_) => {
                let local = path.pop().unwrap_or_default();
                if path.len() == 2 && local == b"edXMLHeader" {
                    // Only the header may hold the Signature: the body (attachments) need not
                    // be read here.
                    break;
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !found {
        return Err(SigFailure::missing());
    }
    // The content model has required exactly one SignedInfo with one Reference, a
    // DigestValue and a SignatureValue; empty values were refused when decoded.
    Ok(out)
}

impl InSignature {
    /// The Signature element opens: in the xmldsig namespace, the edXML one or none; with
    /// no attribute it may not have; not empty.
    fn start(
        ns: &ResolveResult<'_>,
        e: &quick_xml::events::BytesStart<'_>,
        empty: bool,
    ) -> Result<InSignature, SigFailure> {
        let sig_ns = match ns {
            ResolveResult::Unbound => None,
            ResolveResult::Bound(n)
                if n.as_ref() == DSIG_NS.as_bytes() || n.as_ref() == NAMESPACE.as_bytes() =>
            {
                Some(n.as_ref().to_vec())
            }
            _ => {
                return Err(malformed(
                    "Signature must be in the xmldsig namespace, the edXML namespace or none",
                ));
            }
        };
        attributes(Elem::Signature, e)?;
        if empty {
            return Err(malformed("the Signature element is empty"));
        }
        Ok(InSignature {
            ns: sig_ns,
            stack: vec![(Elem::Signature, Cursor::default())],
            text: String::new(),
        })
    }

    /// One event inside the Signature; `true` once the Signature has closed.
    fn event(
        &mut self,
        out: &mut Located,
        pos: usize,
        ns: &ResolveResult<'_>,
        event: Event<'_>,
    ) -> Result<bool, SigFailure> {
        let unreadable =
            |e: quick_xml::encoding::EncodingError| malformed(format!("unreadable text: {e}"));
        match event {
            Event::Start(ref e) => self.open(out, pos, ns, e)?,
            Event::Empty(ref e) => {
                self.open(out, pos, ns, e)?;
                self.close(out)?;
            }
            Event::End(_) => return self.close(out),
            Event::Text(t) => self.text(&t.decode().map_err(unreadable)?)?,
            Event::CData(t) => self.text(&t.decode().map_err(unreadable)?)?,
            Event::GeneralRef(r) => {
                let c = r.resolve_char_ref().ok().flatten().ok_or_else(|| {
                    malformed("only character references may stand in a Signature")
                })?;
                self.text(c.encode_utf8(&mut [0; 4]))?;
            }
            Event::Comment(_) | Event::PI(_) => {
                return Err(malformed(
                    "comments and processing instructions are not allowed inside the Signature",
                ));
            }
            Event::Eof => return Err(malformed("the packet ends inside the Signature")),
            Event::Decl(_) | Event::DocType(_) => {
                return Err(malformed("a declaration inside the Signature"));
            }
        }
        Ok(false)
    }
}
