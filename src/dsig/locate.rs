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

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, SigFailure> {
    match e.try_get_attribute(name) {
        Ok(Some(a)) => a
            .unescape_value()
            .map(|v| Some(v.trim().to_owned()))
            .map_err(|e| malformed(format!("unreadable attribute: {e}"))),
        Ok(None) => Ok(None),
        Err(e) => Err(malformed(format!("unreadable attribute: {e}"))),
    }
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

/// Locates and reads the Signature. `Err` with [`SigCode::Missing`] when there is none.
pub fn locate(doc: &[u8]) -> Result<Located, SigFailure> {
    let mut reader = NsReader::from_reader(doc);
    reader.config_mut().check_end_names = true;
    let bad_xml = |e: quick_xml::Error| malformed(format!("the packet is not well-formed: {e}"));

    // Local names of open elements above (and including) the current one.
    let mut path: Vec<Vec<u8>> = Vec::new();
    // Depth of the Signature element in `path`, while inside it.
    let mut sig_depth: Option<usize> = None;
    let mut found = false;
    let mut out = Located::default();
    let mut references = 0usize;
    // Exactly one SignedInfo: what is canonicalized and signed must be the element whose
    // Reference was read (no room for signature wrapping).
    let mut signed_infos = 0usize;
    let mut text = String::new();

    loop {
        let pos = reader.buffer_position() as usize;
        let (ns, event) = reader.read_resolved_event().map_err(bad_xml)?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let local = e.local_name().into_inner().to_vec();
                if sig_depth.is_none() {
                    let in_header =
                        path.len() == 3 && path[1] == b"edXMLEnvelope" && path[2] == b"edXMLHeader";
                    if in_header && local == b"Signature" {
                        if found {
                            return Err(malformed(
                                "edXMLHeader holds more than one Signature; exactly one is verified",
                            ));
                        }
                        match ns {
                            ResolveResult::Unbound => {}
                            ResolveResult::Bound(n)
                                if n.as_ref() == DSIG_NS.as_bytes()
                                    || n.as_ref() == NAMESPACE.as_bytes() => {}
                            _ => {
                                return Err(malformed(
                                    "Signature must be in the xmldsig namespace, the edXML namespace or none",
                                ));
                            }
                        }
                        found = true;
                        out.signature_start = pos;
                        if empty {
                            return Err(malformed("the Signature element is empty"));
                        }
                        sig_depth = Some(path.len());
                    }
                } else {
                    // Inside the Signature: path[sig_depth] is "Signature".
                    let d = sig_depth.unwrap_or(0);
                    let inner: Vec<&[u8]> = path[d + 1..].iter().map(|p| p.as_slice()).collect();
                    match (inner.as_slice(), local.as_slice()) {
                        ([], b"SignedInfo") => {
                            signed_infos += 1;
                            out.signed_info_start = pos;
                        }
                        ([b"SignedInfo"], b"CanonicalizationMethod") => {
                            out.c14n_method = attr(e, b"Algorithm")?.unwrap_or_default();
                        }
                        ([b"SignedInfo", b"CanonicalizationMethod"], b"InclusiveNamespaces") => {
                            out.c14n_prefix_list = attr(e, b"PrefixList")?;
                        }
                        ([b"SignedInfo"], b"SignatureMethod") => {
                            out.signature_method = attr(e, b"Algorithm")?.unwrap_or_default();
                        }
                        ([b"SignedInfo"], b"Reference") => {
                            references += 1;
                            out.reference_uri = attr(e, b"URI")?;
                        }
                        ([b"SignedInfo", b"Reference", b"Transforms"], b"Transform") => {
                            out.transforms.push(Transform {
                                algorithm: attr(e, b"Algorithm")?.unwrap_or_default(),
                                prefix_list: None,
                            });
                        }
                        (
                            [b"SignedInfo", b"Reference", b"Transforms", b"Transform"],
                            b"InclusiveNamespaces",
                        ) => {
                            if let Some(t) = out.transforms.last_mut() {
                                t.prefix_list = attr(e, b"PrefixList")?;
                            }
                        }
                        ([b"SignedInfo", b"Reference"], b"DigestMethod") => {
                            out.digest_method = attr(e, b"Algorithm")?.unwrap_or_default();
                        }
                        _ => {}
                    }
                    text.clear();
                }
                if !empty {
                    path.push(local);
                }
            }
            Event::End(_) => {
                let local = path.pop().unwrap_or_default();
                if path.len() == 2 && local == b"edXMLHeader" {
                    // Only the header may hold the Signature: the body (attachments) need not
                    // be read here.
                    break;
                }
                if let Some(d) = sig_depth {
                    if path.len() == d {
                        sig_depth = None;
                        continue;
                    }
                    let parent = path.last().map(|p| p.as_slice());
                    match (parent, local.as_slice()) {
                        (Some(b"Reference"), b"DigestValue") => {
                            out.digest_value = base64("DigestValue", &text)?;
                        }
                        (Some(b"Signature"), b"SignatureValue") => {
                            out.signature_value = base64("SignatureValue", &text)?;
                        }
                        (Some(b"X509Data"), b"X509Certificate") => {
                            out.certificates.push(base64("X509Certificate", &text)?);
                        }
                        _ => {}
                    }
                    text.clear();
                }
            }
            Event::Text(t) if sig_depth.is_some() => {
                text.push_str(
                    &t.decode()
                        .map_err(|e| malformed(format!("unreadable text: {e}")))?,
                );
            }
            Event::GeneralRef(r) if sig_depth.is_some() => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !found {
        return Err(SigFailure::missing());
    }
    if signed_infos != 1 {
        return Err(malformed(format!(
            "Signature must hold exactly one SignedInfo; it holds {signed_infos}"
        )));
    }
    if references != 1 {
        return Err(malformed(format!(
            "SignedInfo must hold exactly one Reference (URI=\"\", the whole packet); it holds {references}"
        )));
    }
    if out.digest_value.is_empty() {
        return Err(malformed("Reference has no DigestValue"));
    }
    if out.signature_value.is_empty() {
        return Err(malformed("Signature has no SignatureValue"));
    }
    Ok(out)
}
