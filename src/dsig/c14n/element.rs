//! Start and end tags: which attributes and namespace declarations an element's canonical
//! start tag carries, in which order.

use quick_xml::events::BytesStart;

use super::text::normalize_attr;
use super::{Attr, C14nError, Canonicalizer, Method, XML_NS, err, split_qname};

/// (prefix, URI) of a namespace declaration; (qualified name, value) of an attribute.
type Pair = (Vec<u8>, Vec<u8>);

impl Canonicalizer<'_, '_> {
    /// An element opens: its declarations go in scope; in the output, its canonical start
    /// tag is written (`is_apex`: the top of an element subset).
    pub(super) fn start(
        &mut self,
        e: &BytesStart<'_>,
        output: bool,
        is_apex: bool,
    ) -> Result<(), C14nError> {
        self.in_scope.open();
        let attrs = self.read_attributes(e)?;
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
        let list = self.sorted_attributes(attrs, is_apex)?;
        let decls = self.declarations(split_qname(qname).0, &list);
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

    /// Reads the attributes: namespace declarations go in scope, the rest are returned.
    fn read_attributes(&mut self, e: &BytesStart<'_>) -> Result<Vec<Pair>, C14nError> {
        let mut attrs = Vec::new();
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
        Ok(attrs)
    }

    /// The attributes in canonical order (namespace URI, then local name); an inclusive
    /// subset's apex also gets the xml:* attributes of its ancestors (C14N 1.0 §2.4).
    fn sorted_attributes(&self, attrs: Vec<Pair>, is_apex: bool) -> Result<Vec<Attr>, C14nError> {
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
        Ok(list)
    }

    /// The namespace declarations the start tag writes, sorted by prefix: inclusive C14N
    /// every binding in scope, exclusive only those the element and its attributes use
    /// (and the InclusiveNamespaces prefixes), each unless an output ancestor rendered it.
    fn declarations(&self, elem_prefix: &[u8], list: &[Attr]) -> Vec<Pair> {
        let mut decls: Vec<Pair> = Vec::new();
        match &self.c14n.method {
            Method::Inclusive => {
                for i in (0..self.in_scope.items.len()).rev() {
                    self.consider(&self.in_scope.items[i].0, &mut decls);
                }
            }
            Method::Exclusive { inclusive_prefixes } => {
                self.consider(elem_prefix, &mut decls);
                for a in list {
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
        decls
    }

    /// Adds the declaration of `prefix` to `decls` unless an output ancestor already rendered
    /// the same binding (or, for an empty default namespace, never rendered a default at all).
    fn consider(&self, prefix: &[u8], decls: &mut Vec<Pair>) {
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

    pub(super) fn end(&mut self, qname: &[u8], output: bool) {
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
