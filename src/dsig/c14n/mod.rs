//! Canonical XML 1.0 (inclusive, W3C REC 2001-03-15) and Exclusive XML Canonicalization 1.0,
//! each with or without comments, for exactly the two node-sets XML-DSig needs here: the whole
//! document minus one element (a `Reference URI=""` after the enveloped-signature transform)
//! and one element's subtree (`SignedInfo`).
//!
//! It streams: the document is read once with quick-xml and the canonical bytes go straight to
//! a sink (a digest), so a 10 MiB attachment is hashed without being copied. It assumes what
//! [`crate::edxml::parse`] has already enforced (UTF-8, no DTD, well-formed) but still fails
//! cleanly on anything it cannot read. Only the rules that matter without a DTD exist: every
//! attribute is CDATA, and the only entities are the five predefined ones and character
//! references.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// The namespace the `xml` prefix is bound to.
mod text;

use text::{Out, normalize_attr, normalize_newlines, resolve_reference};

const XML_NS: &[u8] = b"http://www.w3.org/XML/1998/namespace";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// Canonical XML 1.0: every in-scope namespace is rendered.
    Inclusive,
    /// Exclusive C14N: only visibly used namespaces, plus the `InclusiveNamespaces
    /// PrefixList` (`#default` stands for the default namespace, kept here as `""`).
    Exclusive { inclusive_prefixes: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C14n {
    pub method: Method,
    pub comments: bool,
}

impl C14n {
    pub const INCLUSIVE: &'static str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
    pub const INCLUSIVE_COMMENTS: &'static str =
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments";
    pub const EXCLUSIVE: &'static str = "http://www.w3.org/2001/10/xml-exc-c14n#";
    pub const EXCLUSIVE_COMMENTS: &'static str =
        "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";

    /// The method an algorithm URI names, with the exclusive prefix list if any; `None` when
    /// the URI is not a canonicalization this module implements.
    pub fn from_uri(uri: &str, prefix_list: Option<&str>) -> Option<C14n> {
        let exclusive = |comments| C14n {
            method: Method::Exclusive {
                inclusive_prefixes: prefix_list
                    .unwrap_or("")
                    .split_ascii_whitespace()
                    .map(|p| if p == "#default" { "" } else { p }.to_owned())
                    .collect(),
            },
            comments,
        };
        let inclusive = |comments| C14n {
            method: Method::Inclusive,
            comments,
        };
        match uri {
            Self::INCLUSIVE => Some(inclusive(false)),
            Self::INCLUSIVE_COMMENTS => Some(inclusive(true)),
            Self::EXCLUSIVE => Some(exclusive(false)),
            Self::EXCLUSIVE_COMMENTS => Some(exclusive(true)),
            _ => None,
        }
    }
}

/// Which nodes are canonicalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subset {
    /// The whole document, without the element whose start tag begins at this byte offset
    /// (the enveloped signature), if any.
    Document { exclude: Option<usize> },
    /// The element whose start tag begins at this byte offset, with everything inside it.
    Element { start: usize },
}

#[derive(Debug, thiserror::Error)]
#[error("cannot canonicalize: {0}")]
pub struct C14nError(String);

fn err(e: impl std::fmt::Display) -> C14nError {
    C14nError(e.to_string())
}

/// Splits a qualified name into (prefix, local name); the prefix is empty when there is none.
fn split_qname(q: &[u8]) -> (&[u8], &[u8]) {
    match q.iter().position(|&b| b == b':') {
        Some(i) => (&q[..i], &q[i + 1..]),
        None => (&[], q),
    }
}

/// Namespace bindings as a flat stack with one frame per open element.
#[derive(Default)]
struct Bindings {
    items: Vec<(Vec<u8>, Vec<u8>)>,
    frames: Vec<usize>,
}

impl Bindings {
    fn open(&mut self) {
        self.frames.push(self.items.len());
    }
    fn close(&mut self) {
        let at = self.frames.pop().unwrap_or(0);
        self.items.truncate(at);
    }
    fn lookup(&self, prefix: &[u8]) -> Option<&[u8]> {
        if prefix == b"xml" {
            return Some(XML_NS);
        }
        self.items
            .iter()
            .rev()
            .find(|(p, _)| p == prefix)
            .map(|(_, u)| u.as_slice())
    }
}

/// One attribute ready to write: sort keys first.
struct Attr {
    ns: Vec<u8>,
    local: Vec<u8>,
    qname: Vec<u8>,
    value: Vec<u8>,
}

/// Where the reader is relative to the document element.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Before,
    Inside,
    After,
}

/// Canonicalizes `subset` of `doc` with `c14n`, writing the canonical bytes to `sink`.
pub fn canonicalize(
    doc: &[u8],
    subset: Subset,
    c14n: &C14n,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<(), C14nError> {
    let mut w = Canonicalizer {
        c14n,
        in_scope: Bindings::default(),
        rendered: Bindings::default(),
        xml_attrs: Bindings::default(),
        out: Out::new(sink),
    };
    w.run(doc, subset)?;
    w.out.flush();
    Ok(())
}

struct Canonicalizer<'c, 's> {
    c14n: &'c C14n,
    /// Every namespace declaration of the open elements.
    in_scope: Bindings,
    /// The declarations written on the open output elements (what "already rendered" means).
    rendered: Bindings,
    /// `xml:*` attributes of open elements above an element subset (inclusive C14N inherits
    /// them into the subset's apex).
    xml_attrs: Bindings,
    out: Out<'s>,
}

impl Canonicalizer<'_, '_> {
    fn run(&mut self, doc: &[u8], subset: Subset) -> Result<(), C14nError> {
        let mut reader = Reader::from_reader(doc);
        reader.config_mut().check_end_names = true;
        let mut place = Place::Before;
        let mut depth = 0usize;
        // Depth at which output started (element subset) or was suspended (excluded element).
        let mut apex: Option<usize> = None;
        let mut skip_from: Option<usize> = None;
        let document = matches!(subset, Subset::Document { .. });
        let mut ticker = crate::cancel::Ticker::default();
        loop {
            let pos = reader.buffer_position() as usize;
            let event = reader.read_event().map_err(err)?;
            if ticker.cancelled() {
                return Err(C14nError("cancelled: the request was given up".into()));
            }
            let output = skip_from.is_none() && (document || apex.is_some());
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let empty = matches!(event, Event::Empty(_));
                    place = Place::Inside;
                    let mut output = output;
                    match subset {
                        Subset::Document { exclude: Some(x) } if x == pos && output => {
                            if empty {
                                continue;
                            }
                            skip_from = Some(depth);
                            output = false;
                        }
                        Subset::Element { start } if start == pos && !output => {
                            apex = Some(depth);
                            output = true;
                        }
                        _ => {}
                    }
                    let is_apex = apex == Some(depth) && !document;
                    self.start(e, output, is_apex)?;
                    if empty {
                        self.end(e.name().as_ref(), output);
                        if is_apex {
                            break;
                        }
                        if depth == 0 {
                            // An empty root: what follows is outside the document element
                            // (found by the differential test against libxml2).
                            place = Place::After;
                        }
                    } else {
                        depth += 1;
                    }
                }
                Event::End(ref e) => {
                    depth = depth.saturating_sub(1);
                    self.end(e.name().as_ref(), output);
                    if skip_from == Some(depth) {
                        skip_from = None;
                    }
                    if !document && apex == Some(depth) {
                        break;
                    }
                    if depth == 0 {
                        place = Place::After;
                    }
                }
                Event::Text(t) if output && place == Place::Inside => {
                    let text = normalize_newlines(&t);
                    self.out.text(&text);
                }
                Event::CData(t) if output && place == Place::Inside => {
                    let text = normalize_newlines(&t);
                    self.out.text(&text);
                }
                Event::GeneralRef(r) if output && place == Place::Inside => {
                    let c = resolve_reference(&r)?;
                    let mut tmp = [0u8; 4];
                    self.out.text(c.encode_utf8(&mut tmp).as_bytes());
                }
                Event::Comment(c) if output && self.c14n.comments => {
                    let body = normalize_newlines(&c);
                    self.top_level(place, |o| {
                        o.put(b"<!--");
                        o.put(&body);
                        o.put(b"-->");
                    });
                }
                Event::PI(pi) if output => {
                    let target = pi.target();
                    let content = normalize_newlines(pi.content());
                    let content = content.trim_ascii_start();
                    self.top_level(place, |o| {
                        o.put(b"<?");
                        o.put(target);
                        if !content.is_empty() {
                            o.put(b" ");
                            o.put(content);
                        }
                        o.put(b"?>");
                    });
                }
                Event::DocType(_) => return Err(err("DTDs are not supported")),
                Event::Eof => break,
                // XML declaration, whitespace outside the root, nodes outside the subset.
                _ => {}
            }
        }
        if !document && apex.is_none() {
            return Err(err("the element to canonicalize was not found"));
        }
        Ok(())
    }

    /// Comments and PIs outside the document element are separated from it by a line feed.
    fn top_level(&mut self, place: Place, write: impl FnOnce(&mut Out<'_>)) {
        if place == Place::After {
            self.out.put(b"\n");
        }
        write(&mut self.out);
        if place == Place::Before {
            self.out.put(b"\n");
        }
    }

    fn start(&mut self, e: &BytesStart<'_>, output: bool, is_apex: bool) -> Result<(), C14nError> {
        // Read the attributes: namespace declarations go in scope, the rest are kept.
        self.in_scope.open();
        let mut attrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for a in e.attributes().with_checks(true) {
            let a = a.map_err(err)?;
            let key = a.key.into_inner();
            let value = normalize_attr(&a.value)?.into_owned();
            if key == b"xmlns" {
                self.in_scope.items.push((Vec::new(), value));
            } else if let Some(p) = key.strip_prefix(b"xmlns:") {
                self.in_scope.items.push((p.to_vec(), value));
            } else {
                attrs.push((key.to_vec(), value));
            }
        }
        if !output {
            // Outside the output, only remember inheritable xml:* attributes.
            self.xml_attrs.open();
            for (k, v) in attrs {
                if k.starts_with(b"xml:") {
                    self.xml_attrs.items.push((k, v));
                }
            }
            return Ok(());
        }

        let qname = e.name().into_inner();
        let (elem_prefix, _) = split_qname(qname);

        // Attributes with their sort keys (namespace URI, then local name).
        let mut list: Vec<Attr> = Vec::with_capacity(attrs.len());
        for (qname, value) in attrs {
            let (prefix, local) = split_qname(&qname);
            let ns = if prefix.is_empty() {
                Vec::new()
            } else {
                self.in_scope
                    .lookup(prefix)
                    .ok_or_else(|| {
                        err(format!(
                            "undeclared prefix {:?}",
                            String::from_utf8_lossy(prefix)
                        ))
                    })?
                    .to_vec()
            };
            let local = local.to_vec();
            list.push(Attr {
                ns,
                local,
                qname,
                value,
            });
        }
        if is_apex && self.c14n.method == Method::Inclusive {
            // C14N 1.0 §2.4: the apex inherits xml:* attributes of its ancestors.
            for (k, v) in self.xml_attrs.items.iter().rev() {
                let (_, local) = split_qname(k);
                if !list.iter().any(|a| a.ns == XML_NS && a.local == local) {
                    list.push(Attr {
                        ns: XML_NS.to_vec(),
                        local: local.to_vec(),
                        qname: k.clone(),
                        value: v.clone(),
                    });
                }
            }
        }
        list.sort_by(|a, b| (&a.ns, &a.local).cmp(&(&b.ns, &b.local)));

        // Namespace declarations to write.
        let mut decls: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        match &self.c14n.method {
            Method::Inclusive => {
                for i in (0..self.in_scope.items.len()).rev() {
                    self.consider(&self.in_scope.items[i].0, &mut decls);
                }
            }
            Method::Exclusive { inclusive_prefixes } => {
                self.consider(elem_prefix, &mut decls);
                for a in &list {
                    let (p, _) = split_qname(&a.qname);
                    if !p.is_empty() {
                        self.consider(p, &mut decls);
                    }
                }
                for p in inclusive_prefixes {
                    let p = p.as_bytes();
                    if p.is_empty() || self.in_scope.lookup(p).is_some() {
                        self.consider(p, &mut decls);
                    }
                }
            }
        }
        decls.sort_by(|a, b| a.0.cmp(&b.0));

        self.out.put(b"<");
        self.out.put(qname);
        for (p, uri) in &decls {
            if p.is_empty() {
                self.out.put(b" xmlns=\"");
            } else {
                self.out.put(b" xmlns:");
                self.out.put(p);
                self.out.put(b"=\"");
            }
            self.out.attr(uri);
            self.out.put(b"\"");
        }
        for a in &list {
            self.out.put(b" ");
            self.out.put(&a.qname);
            self.out.put(b"=\"");
            self.out.attr(&a.value);
            self.out.put(b"\"");
        }
        self.out.put(b">");
        self.rendered.open();
        self.rendered.items.extend(decls);
        Ok(())
    }

    /// Adds the declaration of `prefix` to `decls` unless an output ancestor already rendered
    /// the same binding (or, for an empty default namespace, never rendered a default at all).
    fn consider(&self, prefix: &[u8], decls: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        if prefix == b"xml" || decls.iter().any(|(p, _)| p == prefix) {
            return;
        }
        let uri = self.in_scope.lookup(prefix).unwrap_or(b"");
        let shown = self.rendered.lookup(prefix);
        let needed = if uri.is_empty() {
            matches!(shown, Some(s) if !s.is_empty())
        } else {
            shown != Some(uri)
        };
        if needed {
            decls.push((prefix.to_vec(), uri.to_vec()));
        }
    }

    fn end(&mut self, qname: &[u8], output: bool) {
        self.in_scope.close();
        if output {
            self.out.put(b"</");
            self.out.put(qname);
            self.out.put(b">");
            self.rendered.close();
        } else {
            self.xml_attrs.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n(doc: &str, subset: Subset, method: &str, prefixes: Option<&str>) -> String {
        let m = C14n::from_uri(method, prefixes).unwrap();
        let mut out = Vec::new();
        canonicalize(doc.as_bytes(), subset, &m, &mut |b| {
            out.extend_from_slice(b)
        })
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    const WHOLE: Subset = Subset::Document { exclude: None };

    #[test]
    fn spec_example_3_2_start_and_end_tags() {
        // W3C C14N 1.0 §3.3 (abridged): attribute order, empty elements, quotes, namespaces.
        let doc = "<!DOCTYPE-free?><doc>\n   <e1   />\n   <e2   ></e2>\n   <e3   name = \"elem3\"   id=\"elem3\"   />\n   <e5 a:attr=\"out\" b:attr=\"sorted\" attr2=\"all\" attr=\"I'm\"\n      xmlns:b=\"http://www.ietf.org\"\n      xmlns:a=\"http://www.w3.org\"\n      xmlns=\"http://example.org\"/>\n   <e6 xmlns=\"\" xmlns:a=\"http://www.w3.org\">\n      <e7 xmlns=\"http://www.ietf.org\">\n         <e8 xmlns=\"\" xmlns:a=\"http://www.w3.org\">\n            <e9 xmlns=\"\" xmlns:a=\"http://www.ietf.org\"/>\n         </e8>\n      </e7>\n   </e6>\n</doc>";
        let doc = doc.replace("<!DOCTYPE-free?>", "");
        let got = c14n(&doc, WHOLE, C14n::INCLUSIVE, None);
        let want = "<doc>\n   <e1></e1>\n   <e2></e2>\n   <e3 id=\"elem3\" name=\"elem3\"></e3>\n   <e5 xmlns=\"http://example.org\" xmlns:a=\"http://www.w3.org\" xmlns:b=\"http://www.ietf.org\" attr=\"I'm\" attr2=\"all\" b:attr=\"sorted\" a:attr=\"out\"></e5>\n   <e6 xmlns:a=\"http://www.w3.org\">\n      <e7 xmlns=\"http://www.ietf.org\">\n         <e8 xmlns=\"\">\n            <e9 xmlns:a=\"http://www.ietf.org\"></e9>\n         </e8>\n      </e7>\n   </e6>\n</doc>";
        assert_eq!(got, want);
    }

    #[test]
    fn text_attributes_and_references() {
        let doc = "<?xml version=\"1.0\"?>\r\n<!-- before -->\r\n<doc a=\"x&#9;y\r\nz\" b='&quot;&lt;&gt;'>A&amp;B &#13;&#x41;\r\n<![CDATA[<c>&]]>&gt;<?pi   data ?></doc>\n<!-- after -->";
        assert_eq!(
            c14n(doc, WHOLE, C14n::INCLUSIVE, None),
            "<doc a=\"x&#x9;y z\" b=\"&quot;&lt;>\">A&amp;B &#xD;A\n&lt;c&gt;&amp;&gt;<?pi data ?></doc>"
        );
        assert_eq!(
            c14n(doc, WHOLE, C14n::INCLUSIVE_COMMENTS, None),
            "<!-- before -->\n<doc a=\"x&#x9;y z\" b=\"&quot;&lt;>\">A&amp;B &#xD;A\n&lt;c&gt;&amp;&gt;<?pi data ?></doc>\n<!-- after -->"
        );
    }

    #[test]
    fn excluding_an_element_and_subsets() {
        let doc = "<r xmlns=\"urn:r\" xmlns:p=\"urn:p\" xml:lang=\"vi\"><h><p:x/><S xmlns=\"urn:s\"><SI a=\"1\"><M/></SI></S></h></r>";
        let sig = doc.find("<S ").unwrap();
        assert_eq!(
            c14n(
                doc,
                Subset::Document { exclude: Some(sig) },
                C14n::INCLUSIVE,
                None
            ),
            "<r xmlns=\"urn:r\" xmlns:p=\"urn:p\" xml:lang=\"vi\"><h><p:x></p:x></h></r>"
        );
        let si = doc.find("<SI").unwrap();
        // Inclusive: the apex gets every in-scope namespace and the inherited xml:lang.
        assert_eq!(
            c14n(doc, Subset::Element { start: si }, C14n::INCLUSIVE, None),
            "<SI xmlns=\"urn:s\" xmlns:p=\"urn:p\" a=\"1\" xml:lang=\"vi\"><M></M></SI>"
        );
        // Exclusive: only what is used, unless listed.
        assert_eq!(
            c14n(doc, Subset::Element { start: si }, C14n::EXCLUSIVE, None),
            "<SI xmlns=\"urn:s\" a=\"1\"><M></M></SI>"
        );
        assert_eq!(
            c14n(
                doc,
                Subset::Element { start: si },
                C14n::EXCLUSIVE,
                Some("p")
            ),
            "<SI xmlns=\"urn:s\" xmlns:p=\"urn:p\" a=\"1\"><M></M></SI>"
        );
    }

    #[test]
    fn exclusive_renders_namespaces_where_used() {
        let doc = "<a:r xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" xmlns=\"urn:d\"><x><b:y b:at=\"1\"/></x><a:z xmlns:a=\"urn:a\"/></a:r>";
        assert_eq!(
            c14n(doc, WHOLE, C14n::EXCLUSIVE, None),
            "<a:r xmlns:a=\"urn:a\"><x xmlns=\"urn:d\"><b:y xmlns:b=\"urn:b\" b:at=\"1\"></b:y></x><a:z></a:z></a:r>"
        );
    }

    #[test]
    fn nothing_after_an_empty_root_but_comments_and_pis() {
        // Found by tests/c14n_differential.rs: the newline after `<r/>` was output.
        let doc = "<?xml version=\"1.0\"?>\n<r a=\"1\"/>\n";
        assert_eq!(
            c14n(
                doc,
                Subset::Document { exclude: None },
                C14n::INCLUSIVE,
                None
            ),
            "<r a=\"1\"></r>"
        );
        let doc = "<r/>\n<!--c-->\n";
        assert_eq!(
            c14n(
                doc,
                Subset::Document { exclude: None },
                C14n::INCLUSIVE_COMMENTS,
                None
            ),
            "<r></r>\n<!--c-->"
        );
    }
}
