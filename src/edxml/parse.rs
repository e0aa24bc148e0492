//! A streaming, borrow-only reader of edXML packets.
//!
//! Vendors order elements differently, pick their own prefixes and leave junk in packets, so
//! fields are found by their path of local names (in the edXML namespace), never by position.
//! The reader borrows the body: a large base64 attachment is one text event that is skipped,
//! not copied. DTDs are refused outright, so no entity expansion can happen.

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use super::collected::Collected;
use super::fields::{
    Field, RECEIVER, REPEATABLE, STRUCTURAL, UNKNOWN, field_at, intern, ns_enforced, single_checked,
};
use super::{EdxmlError, Limits, NAMESPACE, Packet, ResponseFor};

fn malformed(e: impl std::fmt::Display) -> EdxmlError {
    EdxmlError::Malformed(e.to_string())
}

/// Reads and validates an edXML packet within the default [`Limits`].
pub fn parse(body: &[u8]) -> Result<Packet, EdxmlError> {
    parse_limited(body, &Limits::default())
}

/// Per-element bookkeeping for the limits and the one-reading rule.
#[derive(Default)]
struct Frame {
    /// Namespace declarations on this element.
    decls: usize,
    /// Which known child names (bits by index in [`KNOWN`]) this element has had.
    seen: u64,
}

/// `Err(limits_exceeded)` naming `limit` when `n` is over `max`.
fn within(n: usize, max: usize, limit: &'static str) -> Result<(), EdxmlError> {
    if n > max {
        return Err(EdxmlError::LimitsExceeded { limit, max });
    }
    Ok(())
}

/// Counts an element's attributes and namespace declarations without quick-xml's duplicate
/// check (quadratic in the attribute count); refuses more than the limits allow.
fn count_attributes(
    e: &quick_xml::events::BytesStart<'_>,
    limits: &Limits,
) -> Result<usize, EdxmlError> {
    let mut attrs = 0usize;
    let mut decls = 0usize;
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(malformed)?;
        attrs += 1;
        let k = a.key.as_ref();
        if k == b"xmlns" || k.starts_with(b"xmlns:") {
            decls += 1;
        }
        within(attrs, limits.max_attributes, "max_attributes")?;
    }
    Ok(decls)
}

/// Reads and validates an edXML packet. Work is linear in the body's size: the limits bound
/// what would otherwise multiply (namespace declarations in scope × elements, attributes ×
/// attributes, depth).
pub fn parse_limited(body: &[u8], limits: &Limits) -> Result<Packet, EdxmlError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(EdxmlError::Malformed(format!(
            "the body is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        )));
    }
    let mut reader = NsReader::from_reader(body);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;

    // Local names below the root; `None` until the root has been seen.
    let mut path: Vec<&'static str> = Vec::with_capacity(16);
    let mut root_seen = false;
    let mut root_closed = false;
    let mut seen_anything = false;
    // Depth at which a Signature subtree starts (its contents are not edXML).
    let mut signature_depth: Option<usize> = None;
    let mut capture: Option<(Field, String)> = None;
    let mut out = Collected::default();
    // One frame per open element, the root included.
    let mut frames: Vec<Frame> = Vec::with_capacity(16);
    let mut decls_in_scope = 0usize;
    let mut header_elements = 0usize;
    let mut elements = 0usize;
    let mut ticker = crate::cancel::Ticker::default();

    loop {
        let (ns, event) = reader.read_resolved_event().map_err(malformed)?;
        if ticker.cancelled() {
            return Err(EdxmlError::Cancelled);
        }
        let first_event = !seen_anything;
        seen_anything = true;
        match event {
            Event::Decl(decl) => {
                if !first_event {
                    return Err(EdxmlError::Malformed(
                        "the XML declaration must come first (bytes precede it)".into(),
                    ));
                }
                if let Some(enc) = decl.encoding() {
                    let enc = enc.map_err(malformed)?;
                    if !enc.eq_ignore_ascii_case(b"utf-8") {
                        return Err(EdxmlError::Malformed(format!(
                            "encoding {} is not accepted; send UTF-8",
                            String::from_utf8_lossy(&enc)
                        )));
                    }
                }
            }
            Event::DocType(_) => {
                return Err(EdxmlError::Malformed(
                    "DTDs (<!DOCTYPE>) are not accepted".into(),
                ));
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let raw = e.local_name().into_inner();
                let (local, known) = intern(raw);
                let display = || String::from_utf8_lossy(raw).into_owned();
                let in_ns =
                    matches!(ns, ResolveResult::Bound(n) if n.as_ref() == NAMESPACE.as_bytes());
                let decls = count_attributes(e, limits)?;
                within(frames.len() + 1, limits.max_depth, "max_depth")?;
                // quick-xml has resolved this element's name against every binding in scope,
                // so the limit is checked with this element's own declarations counted.
                within(
                    decls_in_scope + decls,
                    limits.max_namespace_declarations,
                    "max_namespace_declarations",
                )?;
                elements += 1;
                within(elements, limits.max_elements, "max_elements")?;
                if path.len() >= 2 && path[0] == "edXMLEnvelope" && path[1] == "edXMLHeader" {
                    header_elements += 1;
                    within(
                        header_elements,
                        limits.max_header_elements,
                        "max_header_elements",
                    )?;
                }
                if !is_empty {
                    decls_in_scope += decls;
                    frames.push(Frame { decls, seen: 0 });
                }
                // Set before this element can open a Signature itself.
                let inside_signature = signature_depth.is_some();
                if root_seen && !root_closed && signature_depth.is_none() {
                    check_one_reading(&path, &mut frames, is_empty, local, known, in_ns, &ns)?;
                }
                if !root_seen {
                    if root_closed || raw != b"edXML" || !in_ns {
                        let found = format!("{} ({})", display(), describe_ns(&ns));
                        return Err(EdxmlError::WrongRoot(found));
                    }
                    root_seen = true;
                    if is_empty {
                        root_closed = true;
                        root_seen = false;
                    }
                    continue;
                }
                if root_closed {
                    return Err(EdxmlError::Malformed(
                        "content after the root element".into(),
                    ));
                }
                if signature_depth.is_none() {
                    if local == "Signature"
                        && path.len() == 2
                        && path[0] == "edXMLEnvelope"
                        && path[1] == "edXMLHeader"
                    {
                        out.has_signature = true;
                        if !is_empty {
                            signature_depth = Some(path.len());
                        }
                    } else if !in_ns && STRUCTURAL.iter().any(|s| s.as_bytes() == raw) {
                        return Err(EdxmlError::WrongNamespace {
                            element: display(),
                            found: describe_ns(&ns),
                        });
                    }
                }
                if inside_signature && !crate::dsig::is_signature_element(raw) {
                    return Err(EdxmlError::SignatureContent(display()));
                }
                if is_empty {
                    continue;
                }
                path.push(local);
                if signature_depth.is_some() {
                    continue;
                }
                match path.as_slice() {
                    [
                        "edXMLEnvelope",
                        "edXMLHeader",
                        "MessageHeader",
                        "ResponseFor",
                    ] => out.response_for.push(ResponseFor::default()),
                    ["AttachmentEncoded", "Attachment"] => out.attachments += 1,
                    p if p == RECEIVER => out.receivers.push(Default::default()),
                    _ => {}
                }
                if in_ns {
                    capture = field_at(&path).map(|f| (f, String::new()));
                }
            }
            Event::End(_) => {
                if let Some(f) = frames.pop() {
                    decls_in_scope -= f.decls;
                }
                if path.is_empty() {
                    // The root closes.
                    root_closed = true;
                    continue;
                }
                if let Some((field, value)) = capture.take() {
                    out.store(field, value)?;
                }
                path.pop();
                if signature_depth == Some(path.len()) {
                    signature_depth = None;
                }
            }
            Event::Text(t) => {
                if let Some((_, buf)) = capture.as_mut() {
                    buf.push_str(&t.decode().map_err(malformed)?);
                } else if (!root_seen || root_closed) && !t.iter().all(|b| b.is_ascii_whitespace())
                {
                    return Err(EdxmlError::Malformed(format!(
                        "text outside the root element: {:?}",
                        String::from_utf8_lossy(&t[..t.len().min(20)])
                    )));
                }
            }
            Event::CData(t) => {
                if let Some((_, buf)) = capture.as_mut() {
                    buf.push_str(&t.decode().map_err(malformed)?);
                }
            }
            Event::GeneralRef(r) => {
                let ch = r.resolve_char_ref().map_err(malformed)?;
                let text = match ch {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(malformed)?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| {
                                EdxmlError::Malformed(format!("undefined entity &{name};"))
                            })?
                            .to_owned()
                    }
                };
                if let Some((_, buf)) = capture.as_mut() {
                    buf.push_str(&text);
                }
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !root_closed {
        return Err(if root_seen {
            EdxmlError::Malformed("the document ends before the root element is closed".into())
        } else {
            EdxmlError::WrongRoot("no element at all".into())
        });
    }
    out.finish()
}

/// The one-reading rules for an element opening under `path`: a single-valued field appears
/// once, and nothing inside MessageHeader or TraceHeaderList is in another namespace. `frames`
/// ends with the element's own frame when it is not empty.
fn check_one_reading(
    path: &[&'static str],
    frames: &mut [Frame],
    is_empty: bool,
    local: &'static str,
    known: Option<usize>,
    in_ns: bool,
    ns: &ResolveResult<'_>,
) -> Result<(), EdxmlError> {
    if !in_ns && ns_enforced(path) {
        return Err(EdxmlError::WrongNamespace {
            element: format!("{}/{}", path.join("/"), local),
            found: describe_ns(ns),
        });
    }
    let Some(idx) = known else { return Ok(()) };
    if !in_ns || !single_checked(path) || REPEATABLE.contains(&local) {
        return Ok(());
    }
    if path.last() == Some(&UNKNOWN) {
        return Ok(());
    }
    // The parent's frame: the last one, or the one before when this element pushed its own.
    let parent = frames.len() - if is_empty { 1 } else { 2 };
    let bit = 1u64 << idx;
    if frames[parent].seen & bit != 0 {
        return Err(EdxmlError::DuplicateField(format!(
            "{}/{}",
            path.join("/"),
            local
        )));
    }
    frames[parent].seen |= bit;
    Ok(())
}

fn describe_ns(ns: &ResolveResult<'_>) -> String {
    match ns {
        ResolveResult::Bound(n) => format!("namespace {}", String::from_utf8_lossy(n.as_ref())),
        ResolveResult::Unbound => "no namespace".into(),
        ResolveResult::Unknown(p) => format!("undeclared prefix {}", String::from_utf8_lossy(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Kind;
    use super::*;

    fn doc(header_extra: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<e:edXML xmlns:e="{NAMESPACE}"><e:edXMLEnvelope><e:edXMLHeader><e:MessageHeader>
<e:To><e:OrganId>000.00.02.H13</e:OrganId></e:To>
<e:From><e:OrganId>000.00.01.H13</e:OrganId><e:OrganName>A &amp; B</e:OrganName></e:From>
<e:Subject>Hello &#x41;</e:Subject><e:DocumentId>D1</e:DocumentId>{header_extra}
</e:MessageHeader></e:edXMLHeader></e:edXMLEnvelope></e:edXML>"#
        )
    }

    #[test]
    fn reads_any_order_and_prefix() {
        let p = parse(doc("").as_bytes()).unwrap();
        assert_eq!(p.kind, Kind::Edoc);
        assert_eq!(p.from, "000.00.01.H13");
        assert_eq!(p.to, vec!["000.00.02.H13"]);
        assert_eq!(p.subject.as_deref(), Some("Hello A"));
        assert_eq!(p.document_id.as_deref(), Some("D1"));
    }

    #[test]
    fn refuses_junk() {
        let body = format!("1212{}", doc(""));
        assert_eq!(parse(body.as_bytes()).unwrap_err().code(), "malformed_xml");
        let body = doc("").replace(NAMESPACE, "urn:other");
        assert_eq!(parse(body.as_bytes()).unwrap_err().code(), "not_edxml");
        let long = format!("<e:Subject>{}</e:Subject>", "ắ".repeat(501));
        let body = doc("").replace("<e:Subject>Hello &#x41;</e:Subject>", &long);
        assert!(matches!(
            parse(body.as_bytes()).unwrap_err(),
            EdxmlError::FieldTooLong {
                field: "Subject",
                len: 501,
                limit: 500
            }
        ));
        let body = doc("").replace("000.00.02.H13", "null");
        assert_eq!(
            parse(body.as_bytes()).unwrap_err().code(),
            "invalid_organ_id"
        );
        let body = doc("").replace("<e:DocumentId>D1</e:DocumentId>", "");
        assert_eq!(
            parse(body.as_bytes()).unwrap_err(),
            EdxmlError::MissingField("DocumentId")
        );
        let body = doc("<!DOCTYPE x>");
        assert_eq!(parse(body.as_bytes()).unwrap_err().code(), "malformed_xml");
        let body = doc("").replace("</e:edXML>", "");
        assert_eq!(parse(body.as_bytes()).unwrap_err().code(), "malformed_xml");
    }

    #[test]
    fn status_packet() {
        let body = format!(
            r#"<edXML xmlns="{NAMESPACE}"><edXMLEnvelope><edXMLHeader><MessageHeader>
<From><OrganId>000.00.02.H13</OrganId></From>
<ResponseFor><OrganId>000.00.01.H13</OrganId><DocumentId>D1</DocumentId></ResponseFor>
<StatusCode>03</StatusCode></MessageHeader></edXMLHeader></edXMLEnvelope></edXML>"#
        );
        let p = parse(body.as_bytes()).unwrap();
        assert_eq!(p.kind, Kind::Status);
        assert_eq!(p.status_code.as_deref(), Some("03"));
        assert_eq!(p.response_for[0].document_id, "D1");
        let bad = body.replace(">03<", ">99<");
        assert_eq!(parse(bad.as_bytes()).unwrap_err().code(), "invalid_field");
    }

    #[test]
    fn one_reading() {
        let two_from = doc("").replace(
            "<e:From>",
            "<e:From><e:OrganId>000.00.03.H13</e:OrganId></e:From><e:From>",
        );
        assert_eq!(
            parse(two_from.as_bytes()).unwrap_err(),
            EdxmlError::DuplicateField("edXMLEnvelope/edXMLHeader/MessageHeader/From".into())
        );
        let two_ids = doc("<e:DocumentId>D2</e:DocumentId>");
        assert_eq!(
            parse(two_ids.as_bytes()).unwrap_err().code(),
            "duplicate_field"
        );
        let two_organ_ids = doc("").replace(
            "<e:OrganId>000.00.01.H13</e:OrganId>",
            "<e:OrganId>000.00.03.H13</e:OrganId><e:OrganId>000.00.01.H13</e:OrganId>",
        );
        assert_eq!(
            parse(two_organ_ids.as_bytes()).unwrap_err().code(),
            "duplicate_field"
        );
        // Several recipients are fine.
        let two_to = doc("<e:To><e:OrganId>000.00.03.H13</e:OrganId></e:To>");
        assert_eq!(parse(two_to.as_bytes()).unwrap().to.len(), 2);
        // An OrganId outside the namespace is not skipped: it is refused.
        let foreign = doc("").replace(
            "<e:OrganId>000.00.01.H13</e:OrganId>",
            "<o:OrganId xmlns:o=\"urn:x\">000.00.03.H13</o:OrganId><e:OrganId>000.00.01.H13</e:OrganId>",
        );
        assert_eq!(
            parse(foreign.as_bytes()).unwrap_err().code(),
            "wrong_namespace"
        );
        let foreign_child = doc("<x:Note xmlns:x=\"urn:x\">hi</x:Note>");
        assert_eq!(
            parse(foreign_child.as_bytes()).unwrap_err().code(),
            "wrong_namespace"
        );
    }

    #[test]
    fn signature_holds_only_xml_dsig() {
        let sig = |inner: &str| {
            doc("").replace(
                "</e:MessageHeader></e:edXMLHeader>",
                &format!("</e:MessageHeader><Signature>{inner}</Signature></e:edXMLHeader>"),
            )
        };
        let fine =
            sig("<SignedInfo><Reference/></SignedInfo><SignatureValue>AA==</SignatureValue>");
        assert!(parse(fine.as_bytes()).unwrap().has_signature);
        let hidden = sig("<SignedInfo/><From><OrganId>000.00.03.H13</OrganId></From>");
        assert_eq!(
            parse(hidden.as_bytes()).unwrap_err().code(),
            "malformed_signature"
        );
        let object = sig("<SignedInfo/><Object>x</Object>");
        assert_eq!(
            parse(object.as_bytes()).unwrap_err().code(),
            "malformed_signature"
        );
    }

    #[test]
    fn limits_and_encoding() {
        let limits = Limits::default();
        let decls: String = (0..65)
            .map(|i| format!(" xmlns:n{i}=\"urn:{i}\""))
            .collect();
        let many = doc("").replacen("<e:edXML ", &format!("<e:edXML{decls} "), 1);
        assert_eq!(
            parse(many.as_bytes()).unwrap_err(),
            EdxmlError::LimitsExceeded {
                limit: "max_attributes",
                max: 64
            }
        );
        let tight = Limits {
            max_namespace_declarations: 10,
            ..limits.clone()
        };
        assert!(matches!(
            parse_limited(
                many.as_bytes(),
                &Limits {
                    max_attributes: 100,
                    ..tight
                }
            )
            .unwrap_err(),
            EdxmlError::LimitsExceeded {
                limit: "max_namespace_declarations",
                ..
            }
        ));
        let deep = doc(&format!("{}{}", "<e:x>".repeat(100), "</e:x>".repeat(100)));
        assert!(matches!(
            parse(deep.as_bytes()).unwrap_err(),
            EdxmlError::LimitsExceeded {
                limit: "max_depth",
                ..
            }
        ));
        let wide = doc(&"<e:Extra/>".repeat(10_001));
        assert!(matches!(
            parse(wide.as_bytes()).unwrap_err(),
            EdxmlError::LimitsExceeded {
                limit: "max_header_elements",
                ..
            }
        ));
        let many_elements = doc("").replacen(
            "</e:edXMLEnvelope>",
            &format!(
                "<e:edXMLBody>{}</e:edXMLBody></e:edXMLEnvelope>",
                "<x/>".repeat(100_001)
            ),
            1,
        );
        assert!(matches!(
            parse(many_elements.as_bytes()).unwrap_err(),
            EdxmlError::LimitsExceeded {
                limit: "max_elements",
                ..
            }
        ));
        // Not UTF-8 anywhere (here in a comment no field reads) is refused.
        let mut latin1 = doc("<!-- caf\u{e9} -->").into_bytes();
        let at = latin1.windows(2).position(|w| w == "é".as_bytes()).unwrap();
        latin1.splice(at..at + 2, [0xE9]);
        assert_eq!(parse(&latin1).unwrap_err().code(), "malformed_xml");
        // A UTF-8 byte-order mark is accepted (XML 1.0 §4.3.3); the reader skips it.
        let bom = [&[0xEF, 0xBB, 0xBF][..], doc("").as_bytes()].concat();
        assert_eq!(parse(&bom).unwrap().from, "000.00.01.H13");
    }
}
