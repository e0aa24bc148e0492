//! The signature fields of the final document: AcroForm fields of type `/Sig` (inherited
//! through `/Kids`) whose value is a signature dictionary.

use lopdf::{Dictionary, Document, Object};

use super::{Problem, Verdict};

/// Field trees deeper than this are refused (a loop or a bomb, not a form).
const MAX_DEPTH: usize = 16;

/// A filled signature field.
#[derive(Debug, Clone)]
pub struct SigField {
    pub name: String,
    pub byte_range: Vec<i64>,
    /// `/Contents` as lopdf decoded it (the CMS bytes, usually zero-padded).
    pub contents: Vec<u8>,
    pub sub_filter: String,
}

fn parse_error(msg: impl Into<String>) -> Problem {
    Problem::new(Verdict::ParseError, msg)
}

/// The object `o` is, following one reference.
fn resolve<'a>(doc: &'a Document, o: &'a Object) -> Option<&'a Object> {
    match o {
        Object::Reference(id) => doc.get_object(*id).ok(),
        other => Some(other),
    }
}

fn dict<'a>(doc: &'a Document, o: &'a Object) -> Option<&'a Dictionary> {
    match resolve(doc, o)? {
        Object::Dictionary(d) => Some(d),
        Object::Stream(s) => Some(&s.dict),
        _ => None,
    }
}

fn name_of(d: &Dictionary, key: &[u8]) -> Option<String> {
    match d.get(key).ok()? {
        Object::Name(n) => Some(String::from_utf8_lossy(n).into_owned()),
        _ => None,
    }
}

/// Every filled signature field, at most `max` (more is refused).
pub fn signatures(doc: &Document, max: usize) -> Result<Vec<SigField>, Problem> {
    let catalog = doc
        .catalog()
        .map_err(|e| parse_error(format!("no document catalog: {e}")))?;
    let Some(form) = catalog.get(b"AcroForm").ok().and_then(|f| dict(doc, f)) else {
        return Ok(vec![]);
    };
    let Some(Object::Array(top)) = form.get(b"Fields").ok().and_then(|f| resolve(doc, f)) else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in top {
        walk(doc, f, "", None, 0, &mut seen, &mut out)?;
        if out.len() > max {
            return Err(Problem::new(
                Verdict::Unsupported,
                format!("more than {max} signatures"),
            ));
        }
    }
    Ok(out)
}

/// One field and its kids; `ft` is the type inherited from the parent.
fn walk(
    doc: &Document,
    field: &Object,
    parent: &str,
    ft: Option<&str>,
    depth: usize,
    seen: &mut std::collections::HashSet<(u32, u16)>,
    out: &mut Vec<SigField>,
) -> Result<(), Problem> {
    if depth > MAX_DEPTH {
        return Err(parse_error("the form's field tree is too deep"));
    }
    if let Object::Reference(id) = field {
        if !seen.insert(*id) {
            return Err(parse_error("the form's field tree has a loop"));
        }
    }
    let Some(d) = dict(doc, field) else {
        return Ok(());
    };
    let own = match d.get(b"T").ok() {
        Some(Object::String(t, _)) => String::from_utf8_lossy(t).into_owned(),
        _ => String::new(),
    };
    let name = match (parent.is_empty(), own.is_empty()) {
        (true, _) => own,
        (false, true) => parent.to_owned(),
        (false, false) => format!("{parent}.{own}"),
    };
    let ft = name_of(d, b"FT").or(ft.map(str::to_owned));
    if let Some(Object::Array(kids)) = d.get(b"Kids").ok().and_then(|k| resolve(doc, k)) {
        for k in kids {
            walk(doc, k, &name, ft.as_deref(), depth + 1, seen, out)?;
        }
    }
    if ft.as_deref() != Some("Sig") {
        return Ok(());
    }
    let Some(v) = d.get(b"V").ok().and_then(|v| dict(doc, v)) else {
        return Ok(()); // An empty signature field.
    };
    if name_of(v, b"Type").as_deref() == Some("DocTimeStamp") {
        return Ok(()); // A document time stamp signs no one's name.
    }
    let byte_range = match v.get(b"ByteRange").ok().and_then(|b| resolve(doc, b)) {
        Some(Object::Array(a)) => a
            .iter()
            .map(|x| match x {
                Object::Integer(i) => Ok(*i),
                _ => Err(Problem::new(
                    Verdict::ByterangeMalformed,
                    format!("{name}: ByteRange holds a non-integer"),
                )),
            })
            .collect::<Result<Vec<i64>, Problem>>()?,
        _ => {
            return Err(Problem::new(
                Verdict::ByterangeMalformed,
                format!("{name}: the signature has no ByteRange array"),
            ));
        }
    };
    let contents = match v.get(b"Contents").ok().and_then(|c| resolve(doc, c)) {
        Some(Object::String(s, _)) => s.clone(),
        _ => {
            return Err(Problem::new(
                Verdict::ByterangeMalformed,
                format!("{name}: the signature has no Contents string"),
            ));
        }
    };
    out.push(SigField {
        name,
        byte_range,
        contents,
        sub_filter: name_of(v, b"SubFilter").unwrap_or_default(),
    });
    Ok(())
}
