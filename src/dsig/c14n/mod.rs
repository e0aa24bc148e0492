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
mod element;
mod text;

use text::{Out, normalize_newlines, resolve_reference};

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

/// Where a canonicalization stands in the document.
struct Walk {
    subset: Subset,
    /// The whole document (else one element's subtree).
    document: bool,
    place: Place,
    depth: usize,
    /// Depth at which output started (element subset).
    apex: Option<usize>,
    /// Depth at which output was suspended (the excluded element).
    skip_from: Option<usize>,
}

impl Walk {
    /// Whether the current node is in the subset.
    fn output(&self) -> bool {
        self.skip_from.is_none() && (self.document || self.apex.is_some())
    }
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
        let mut walk = Walk {
            subset,
            document: matches!(subset, Subset::Document { .. }),
            place: Place::Before,
            depth: 0,
            apex: None,
            skip_from: None,
        };
        let mut ticker = crate::cancel::Ticker::default();
        loop {
            let pos = reader.buffer_position() as usize;
            let event = reader.read_event().map_err(err)?;
            if ticker.cancelled() {
                return Err(C14nError("cancelled: the request was given up".into()));
            }
            let output = walk.output();
            let done = match event {
                Event::Start(ref e) => self.open(e, false, pos, &mut walk)?,
                Event::Empty(ref e) => self.open(e, true, pos, &mut walk)?,
                Event::End(ref e) => self.close(e.name().as_ref(), output, &mut walk),
                Event::DocType(_) => return Err(err("DTDs are not supported")),
                Event::Eof => true,
                other => {
                    if output {
                        self.node(other, walk.place)?;
                    }
                    false
                }
            };
            if done {
                break;
            }
        }
        if !walk.document && walk.apex.is_none() {
            return Err(err("the element to canonicalize was not found"));
        }
        Ok(())
    }

    /// An element opens (`empty`: and closes). Returns whether the subset is complete.
    fn open(
        &mut self,
        e: &BytesStart<'_>,
        empty: bool,
        pos: usize,
        walk: &mut Walk,
    ) -> Result<bool, C14nError> {
        walk.place = Place::Inside;
        let mut output = walk.output();
        match walk.subset {
            Subset::Document { exclude: Some(x) } if x == pos && output => {
                if empty {
                    return Ok(false);
                }
                walk.skip_from = Some(walk.depth);
                output = false;
            }
            Subset::Element { start } if start == pos && !output => {
                walk.apex = Some(walk.depth);
                output = true;
            }
            _ => {}
        }
        let is_apex = walk.apex == Some(walk.depth) && !walk.document;
        self.start(e, output, is_apex)?;
        if !empty {
            walk.depth += 1;
            return Ok(false);
        }
        self.end(e.name().as_ref(), output);
        if is_apex {
            return Ok(true);
        }
        if walk.depth == 0 {
            // An empty root: what follows is outside the document element (found by the
            // differential test against libxml2).
            walk.place = Place::After;
        }
        Ok(false)
    }

    /// An element closes. Returns whether the subset is complete.
    fn close(&mut self, name: &[u8], output: bool, walk: &mut Walk) -> bool {
        walk.depth = walk.depth.saturating_sub(1);
        self.end(name, output);
        if walk.skip_from == Some(walk.depth) {
            walk.skip_from = None;
        }
        if !walk.document && walk.apex == Some(walk.depth) {
            return true;
        }
        if walk.depth == 0 {
            walk.place = Place::After;
        }
        false
    }

    /// A node other than an element, in the output: text inside the document element,
    /// comments (when kept) and PIs anywhere. The XML declaration and whitespace outside
    /// the root are not nodes of the data model.
    fn node(&mut self, event: Event<'_>, place: Place) -> Result<(), C14nError> {
        match event {
            Event::Text(t) if place == Place::Inside => {
                let text = normalize_newlines(&t);
                self.out.text(&text);
            }
            Event::CData(t) if place == Place::Inside => {
                let text = normalize_newlines(&t);
                self.out.text(&text);
            }
            Event::GeneralRef(r) if place == Place::Inside => {
                let c = resolve_reference(&r)?;
                let mut tmp = [0u8; 4];
                self.out.text(c.encode_utf8(&mut tmp).as_bytes());
            }
            Event::Comment(c) if self.c14n.comments => {
                let body = normalize_newlines(&c);
                self.top_level(place, |o| {
                    o.put(b"<!--");
                    o.put(&body);
                    o.put(b"-->");
                });
            }
            Event::PI(pi) => {
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
            _ => {}
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
