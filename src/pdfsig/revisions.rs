//! What may change after a signed revision. A signature covers the bytes of its revision;
//! an incremental update appended later can still change what a viewer shows (the
//! incremental-saving and shadow attacks of pdf-insecurity.org), so every object of the
//! signed revision is compared with the final file's. After a signature only what signing
//! again legitimately adds may follow: new signature fields with their widgets and
//! appearances, the AcroForm's field list and a page's annotation list growing by those,
//! signature values filling empty signature fields, in the catalog the form, DSS
//! (validation data), the version, extensions and XMP metadata, the XMP metadata stream
//! itself and the document information's `/ModDate` and `/Producer` (signing tools stamp
//! them). Anything else — a page's content or resources, `/Root` or `/Pages`,
//! another annotation, a redefined object — is `disallowed_change`.

use std::panic::AssertUnwindSafe;

use lopdf::{Dictionary, Document, Object, ObjectId};

use super::{Problem, Verdict};

/// The most one stream may inflate to while the file is read (object and xref streams).
const MAX_INFLATED: usize = 64 << 20;

/// Parses `pdf` strictly: no repaired cross-reference tables (a file whose xref does not
/// describe it is not one whose revisions can be trusted), no unbounded inflation, and a
/// parser panic turned into a parse error. The file must end a revision (`%%EOF`): a
/// truncated upload is refused, not guessed at.
pub fn load(pdf: &[u8]) -> Result<Document, Problem> {
    if !pdf.trim_ascii_end().ends_with(b"%%EOF") {
        return Err(Problem::new(
            Verdict::ParseError,
            "the file does not end with %%EOF (truncated?)",
        ));
    }
    let options = || lopdf::LoadOptions {
        strict: true,
        max_decompressed_size: Some(MAX_INFLATED),
        ..Default::default()
    };
    let parsed = std::panic::catch_unwind(AssertUnwindSafe(|| {
        Document::load_mem_with_options(pdf, options())
    }));
    match parsed {
        Ok(Ok(doc)) => Ok(doc),
        Ok(Err(e)) => Err(Problem::new(
            Verdict::ParseError,
            format!("not a readable PDF: {e}"),
        )),
        Err(_) => Err(Problem::new(
            Verdict::ParseError,
            "the PDF parser gave up on this file",
        )),
    }
}

fn disallowed(msg: String) -> Problem {
    Problem::new(Verdict::DisallowedChange, msg)
}

/// Checks the changes between the revision ending at `end` and the final document.
pub fn changes_after(pdf: &[u8], end: usize, last: &Document) -> Result<(), Problem> {
    if end >= pdf.len() {
        return Ok(()); // The signature covers the whole file.
    }
    let signed = load(&pdf[..end])?;
    let root = |d: &Document| {
        d.trailer
            .get(b"Root")
            .ok()
            .and_then(|r| r.as_reference().ok())
    };
    if root(&signed) != root(last) {
        return Err(disallowed(
            "the document catalog was replaced after signing".into(),
        ));
    }
    for (id, before) in &signed.objects {
        match last.objects.get(id) {
            Some(after) if after == before => {}
            Some(after) => allowed_update(*id, before, after, &signed, last)?,
            None => {
                return Err(disallowed(format!(
                    "object {} {} was removed after signing",
                    id.0, id.1
                )));
            }
        }
    }
    Ok(())
}

fn dict_of(o: &Object) -> Option<&Dictionary> {
    match o {
        Object::Dictionary(d) => Some(d),
        Object::Stream(s) => Some(&s.dict),
        _ => None,
    }
}

fn name(d: &Dictionary, key: &[u8]) -> Option<Vec<u8>> {
    d.get(key).ok()?.as_name().ok().map(<[u8]>::to_vec)
}

/// Whether the signed document's object `id` may have become `after`.
fn allowed_update(
    id: ObjectId,
    before: &Object,
    after: &Object,
    signed: &Document,
    last: &Document,
) -> Result<(), Problem> {
    let what = |why: &str| disallowed(format!("object {} {}: {why}", id.0, id.1));
    if is_xmp_metadata(before) && is_xmp_metadata(after) {
        return Ok(()); // Signing tools rewrite the XMP packet (ModifyDate); it is not drawn.
    }
    let (Object::Dictionary(b), Object::Dictionary(a)) = (before, after) else {
        return Err(what("changed after signing"));
    };
    let changed: Vec<Vec<u8>> = a
        .iter()
        .map(|(k, _)| k.clone())
        .chain(b.iter().map(|(k, _)| k.clone()))
        .filter(|k| a.get(k).ok() != b.get(k).ok())
        .collect();
    let only = |keys: &[&[u8]]| changed.iter().all(|k| keys.contains(&k.as_slice()));
    let is_root = signed.trailer.get(b"Root").ok() == Some(&Object::Reference(id));
    let is_info = signed.trailer.get(b"Info").ok() == Some(&Object::Reference(id));
    if is_info {
        // Signing tools stamp the document information with their name and the time.
        return if only(&[b"ModDate", b"Producer"]) {
            Ok(())
        } else {
            Err(what(
                "the document information changed beyond ModDate and Producer",
            ))
        };
    }
    let kind = name(a, b"Type");
    if is_root {
        // What signing tools write into the catalog: the form, validation data, the PDF
        // version and its extensions (PDF 2.0, ISO 32002), XMP metadata. None is drawn.
        let signing = [
            b"AcroForm".as_slice(),
            b"DSS",
            b"Extensions",
            b"Version",
            b"Metadata",
        ];
        return if only(&signing) {
            Ok(())
        } else {
            Err(what(
                "the catalog changed beyond the form, DSS, version, extensions and metadata",
            ))
        };
    }
    if kind.as_deref() == Some(b"Page") {
        if !only(&[b"Annots"]) {
            return Err(what(
                "a page's content, resources or geometry changed after signing",
            ));
        }
        return new_annotations_are_signature_widgets(b, a, signed, last).map_err(|w| what(&w));
    }
    let is_sig_field = name(b, b"FT").as_deref() == Some(b"Sig");
    let is_widget = name(b, b"Subtype").as_deref() == Some(b"Widget");
    if is_sig_field && only(&[b"V", b"AP", b"AS", b"F", b"Lock"]) && b.get(b"V").is_err() {
        return Ok(()); // An empty signature field was signed.
    }
    if is_widget && name(b, b"FT").as_deref() == Some(b"Sig") && only(&[b"AP", b"V"]) {
        return Ok(());
    }
    if b.has(b"Fields") && only(&[b"Fields", b"SigFlags", b"DR", b"DA"]) {
        return grows(b, a, b"Fields").map_err(|w| what(&w));
    }
    Err(what("changed after signing"))
}

/// An XMP metadata stream (`/Type /Metadata /Subtype /XML`).
fn is_xmp_metadata(o: &Object) -> bool {
    match o {
        Object::Stream(s) => {
            name(&s.dict, b"Type").as_deref() == Some(b"Metadata")
                && name(&s.dict, b"Subtype").as_deref() == Some(b"XML")
        }
        _ => false,
    }
}

/// `key`'s array in `after` keeps every element of `before`'s.
fn grows(before: &Dictionary, after: &Dictionary, key: &[u8]) -> Result<(), String> {
    let arr = |d: &Dictionary| match d.get(key) {
        Ok(Object::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let (b, a) = (arr(before), arr(after));
    if b.iter().all(|x| a.contains(x)) {
        Ok(())
    } else {
        Err(format!("{} lost entries", String::from_utf8_lossy(key)))
    }
}

/// A page's new annotations may only be signature widgets (anything else draws on the page).
fn new_annotations_are_signature_widgets(
    before: &Dictionary,
    after: &Dictionary,
    signed: &Document,
    last: &Document,
) -> Result<(), String> {
    let list = |d: &Dictionary, doc: &Document| -> Vec<Object> {
        match d.get(b"Annots") {
            Ok(Object::Array(a)) => a.clone(),
            Ok(Object::Reference(r)) => match doc.get_object(*r) {
                Ok(Object::Array(a)) => a.clone(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    };
    let (old, new) = (list(before, signed), list(after, last));
    if !old.iter().all(|x| new.contains(x)) {
        return Err("annotations were removed".into());
    }
    for added in new.iter().filter(|x| !old.contains(x)) {
        let annot = match added {
            Object::Reference(r) => last.get_object(*r).ok().and_then(dict_of),
            other => dict_of(other),
        };
        let sig_widget = annot.is_some_and(|d| {
            name(d, b"Subtype").as_deref() == Some(b"Widget") && is_signature_field(d, last)
        });
        if !sig_widget {
            return Err("an annotation other than a signature widget was added".into());
        }
    }
    Ok(())
}

/// A widget's field type is `/Sig` (on the widget itself or its parent field).
fn is_signature_field(widget: &Dictionary, doc: &Document) -> bool {
    if name(widget, b"FT").as_deref() == Some(b"Sig") {
        return true;
    }
    let parent = match widget.get(b"Parent") {
        Ok(Object::Reference(r)) => doc.get_object(*r).ok().and_then(dict_of),
        _ => None,
    };
    parent.is_some_and(|p| name(p, b"FT").as_deref() == Some(b"Sig"))
}
