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
    let mut walk = Walk::new(limits);
    let mut ticker = crate::cancel::Ticker::default();
    let mut first_event = true;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(malformed)?;
        if ticker.cancelled() {
            return Err(EdxmlError::Cancelled);
        }
        match event {
            Event::Decl(decl) => check_declaration(&decl, first_event)?,
            Event::DocType(_) => {
                return Err(EdxmlError::Malformed(
                    "DTDs (<!DOCTYPE>) are not accepted".into(),
                ));
            }
            Event::Start(ref e) => walk.open(e, &ns, false)?,
            Event::Empty(ref e) => walk.open(e, &ns, true)?,
            Event::End(_) => walk.close()?,
            Event::Text(t) => walk.text(&t)?,
            Event::CData(t) => walk.capture(&t.decode().map_err(malformed)?),
            Event::GeneralRef(r) => walk.capture(&resolve_reference(&r)?),
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
        first_event = false;
    }
    walk.finish()
}

/// The XML declaration: first in the body, and UTF-8 if it names an encoding.
fn check_declaration(
    decl: &quick_xml::events::BytesDecl<'_>,
    first_event: bool,
) -> Result<(), EdxmlError> {
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
    Ok(())
}

/// A character reference or one of XML's five predefined entities; anything else is refused
/// (there is no DTD to define it).
fn resolve_reference(r: &quick_xml::events::BytesRef<'_>) -> Result<String, EdxmlError> {
    if let Some(c) = r.resolve_char_ref().map_err(malformed)? {
        return Ok(c.to_string());
    }
    let name = r.decode().map_err(malformed)?;
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or_else(|| EdxmlError::Malformed(format!("undefined entity &{name};")))
}

/// The reader's state between events.
struct Walk<'l> {
    limits: &'l Limits,
    /// Local names below the root.
    path: Vec<&'static str>,
    root_seen: bool,
    root_closed: bool,
    /// Depth at which a Signature subtree starts (its contents are not edXML).
    signature_depth: Option<usize>,
    /// The field whose text is being read.
    capture: Option<(Field, String)>,
    out: Collected,
    /// One frame per open element, the root included.
    frames: Vec<Frame>,
    decls_in_scope: usize,
    header_elements: usize,
    elements: usize,
}

impl<'l> Walk<'l> {
    fn new(limits: &'l Limits) -> Walk<'l> {
        Walk {
            limits,
            path: Vec::with_capacity(16),
            root_seen: false,
            root_closed: false,
            signature_depth: None,
            capture: None,
            out: Collected::default(),
            frames: Vec::with_capacity(16),
            decls_in_scope: 0,
            header_elements: 0,
            elements: 0,
        }
    }

    /// An element opens (`is_empty`: and closes at once).
    fn open(
        &mut self,
        e: &quick_xml::events::BytesStart<'_>,
        ns: &ResolveResult<'_>,
        is_empty: bool,
    ) -> Result<(), EdxmlError> {
        let raw = e.local_name().into_inner();
        let (local, known) = intern(raw);
        let in_ns = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == NAMESPACE.as_bytes());
        self.admit(e, is_empty)?;
        // Set before this element can open a Signature itself.
        let inside_signature = self.signature_depth.is_some();
        if self.root_seen && !self.root_closed && !inside_signature {
            check_one_reading(
                &self.path,
                &mut self.frames,
                is_empty,
                local,
                known,
                in_ns,
                ns,
            )?;
        }
        if !self.root_seen {
            return self.open_root(raw, in_ns, ns, is_empty);
        }
        if self.root_closed {
            return Err(EdxmlError::Malformed(
                "content after the root element".into(),
            ));
        }
        let display = || String::from_utf8_lossy(raw).into_owned();
        if !inside_signature {
            if local == "Signature" && self.path == ["edXMLEnvelope", "edXMLHeader"] {
                self.out.has_signature = true;
                if !is_empty {
                    self.signature_depth = Some(self.path.len());
                }
            } else if !in_ns && STRUCTURAL.iter().any(|s| s.as_bytes() == raw) {
                return Err(EdxmlError::WrongNamespace {
                    element: display(),
                    found: describe_ns(ns),
                });
            }
        }
        if inside_signature && !crate::signature_model::Elem::is_inner(raw) {
            return Err(EdxmlError::SignatureContent(display()));
        }
        if is_empty {
            return Ok(());
        }
        self.path.push(local);
        if self.signature_depth.is_none() {
            self.begin_field(in_ns);
        }
        Ok(())
    }

    /// Counts the element against the limits and opens its frame.
    fn admit(
        &mut self,
        e: &quick_xml::events::BytesStart<'_>,
        is_empty: bool,
    ) -> Result<(), EdxmlError> {
        let limits = self.limits;
        let decls = count_attributes(e, limits)?;
        within(self.frames.len() + 1, limits.max_depth, "max_depth")?;
        // quick-xml has resolved this element's name against every binding in scope, so the
        // limit is checked with this element's own declarations counted.
        within(
            self.decls_in_scope + decls,
            limits.max_namespace_declarations,
            "max_namespace_declarations",
        )?;
        self.elements += 1;
        within(self.elements, limits.max_elements, "max_elements")?;
        if self.path.starts_with(&["edXMLEnvelope", "edXMLHeader"]) {
            self.header_elements += 1;
            within(
                self.header_elements,
                limits.max_header_elements,
                "max_header_elements",
            )?;
        }
        if !is_empty {
            self.decls_in_scope += decls;
            self.frames.push(Frame { decls, seen: 0 });
        }
        Ok(())
    }

    /// The root element: `edXML` in the edXML namespace, once.
    fn open_root(
        &mut self,
        raw: &[u8],
        in_ns: bool,
        ns: &ResolveResult<'_>,
        is_empty: bool,
    ) -> Result<(), EdxmlError> {
        if self.root_closed || raw != b"edXML" || !in_ns {
            let found = format!("{} ({})", String::from_utf8_lossy(raw), describe_ns(ns));
            return Err(EdxmlError::WrongRoot(found));
        }
        self.root_seen = true;
        if is_empty {
            self.root_closed = true;
            self.root_seen = false;
        }
        Ok(())
    }

    /// Starts collecting what the element at the current path holds.
    fn begin_field(&mut self, in_ns: bool) {
        match self.path.as_slice() {
            [
                "edXMLEnvelope",
                "edXMLHeader",
                "MessageHeader",
                "ResponseFor",
            ] => self.out.response_for.push(ResponseFor::default()),
            ["AttachmentEncoded", "Attachment"] => self.out.attachments += 1,
            p if p == RECEIVER => self.out.receivers.push(Default::default()),
            _ => {}
        }
        if in_ns {
            self.capture = field_at(&self.path).map(|f| (f, String::new()));
        }
    }

    fn close(&mut self) -> Result<(), EdxmlError> {
        if let Some(f) = self.frames.pop() {
            self.decls_in_scope -= f.decls;
        }
        if self.path.is_empty() {
            // The root closes.
            self.root_closed = true;
            return Ok(());
        }
        if let Some((field, value)) = self.capture.take() {
            self.out.store(field, value)?;
        }
        self.path.pop();
        if self.signature_depth == Some(self.path.len()) {
            self.signature_depth = None;
        }
        Ok(())
    }

    fn text(&mut self, t: &quick_xml::events::BytesText<'_>) -> Result<(), EdxmlError> {
        if let Some((_, buf)) = self.capture.as_mut() {
            buf.push_str(&t.decode().map_err(malformed)?);
        } else if (!self.root_seen || self.root_closed)
            && !t.iter().all(|b| b.is_ascii_whitespace())
        {
            return Err(EdxmlError::Malformed(format!(
                "text outside the root element: {:?}",
                String::from_utf8_lossy(&t[..t.len().min(20)])
            )));
        }
        Ok(())
    }

    /// Text from a CDATA section or a reference, kept when a field is being read.
    fn capture(&mut self, text: &str) {
        if let Some((_, buf)) = self.capture.as_mut() {
            buf.push_str(text);
        }
    }

    fn finish(self) -> Result<Packet, EdxmlError> {
        if !self.root_closed {
            return Err(if self.root_seen {
                EdxmlError::Malformed("the document ends before the root element is closed".into())
            } else {
                EdxmlError::WrongRoot("no element at all".into())
            });
        }
        self.out.finish()
    }
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
#[path = "parse_tests.rs"]
mod tests;
