//! The text layer of canonicalization: buffered output with C14N escaping, line-end
//! normalization, character and entity references, attribute-value normalization.

use std::borrow::Cow;

use super::{C14nError, err};

/// Buffers small writes so the sink (a digest) sees few large updates; large runs of text that
/// need no escaping go to the sink directly.
pub(super) struct Out<'s> {
    buf: Vec<u8>,
    sink: &'s mut dyn FnMut(&[u8]),
}

impl<'s> Out<'s> {
    const FLUSH_AT: usize = 16 * 1024;

    pub(super) fn new(sink: &'s mut dyn FnMut(&[u8])) -> Out<'s> {
        Out {
            buf: Vec::with_capacity(Self::FLUSH_AT * 2),
            sink,
        }
    }

    pub(super) fn put(&mut self, b: &[u8]) {
        if b.len() >= Self::FLUSH_AT {
            self.flush();
            (self.sink)(b);
            return;
        }
        self.buf.extend_from_slice(b);
        if self.buf.len() >= Self::FLUSH_AT {
            self.flush();
        }
    }

    pub(super) fn flush(&mut self) {
        if !self.buf.is_empty() {
            (self.sink)(&self.buf);
            self.buf.clear();
        }
    }

    /// Text node content: `&`, `<`, `>` and carriage returns are escaped. Attachments make
    /// text the bulk of a packet, so the scan for those bytes is vectorized (memchr).
    pub(super) fn text(&mut self, mut s: &[u8]) {
        loop {
            let special = memchr::memchr3(b'&', b'<', b'>', s);
            let cr = memchr::memchr(b'\r', &s[..special.unwrap_or(s.len())]);
            let Some(i) = cr.or(special) else {
                self.put(s);
                return;
            };
            self.put(&s[..i]);
            self.put(match s[i] {
                b'&' => b"&amp;",
                b'<' => b"&lt;",
                b'>' => b"&gt;",
                _ => b"&#xD;",
            });
            s = &s[i + 1..];
        }
    }

    /// Attribute and namespace values: `&`, `<`, `"` and the three whitespace controls.
    pub(super) fn attr(&mut self, s: &[u8]) {
        self.escaped(s, |b| match b {
            b'&' => Some(b"&amp;"),
            b'<' => Some(b"&lt;"),
            b'"' => Some(b"&quot;"),
            b'\t' => Some(b"&#x9;"),
            b'\n' => Some(b"&#xA;"),
            b'\r' => Some(b"&#xD;"),
            _ => None,
        })
    }

    pub(super) fn escaped(&mut self, s: &[u8], esc: impl Fn(u8) -> Option<&'static [u8]>) {
        let mut from = 0;
        for (i, &b) in s.iter().enumerate() {
            if let Some(rep) = esc(b) {
                self.put(&s[from..i]);
                self.put(rep);
                from = i + 1;
            }
        }
        self.put(&s[from..]);
    }
}

/// Normalizes line ends as an XML parser must (CR LF and lone CR become LF).
pub(super) fn normalize_newlines(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'\r') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\r' {
            out.push(b'\n');
            if raw.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
        } else {
            out.push(raw[i]);
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// Resolves a character reference (`#65`, `#x41`) or a predefined entity name.
pub(super) fn resolve_reference(name: &[u8]) -> Result<char, C14nError> {
    let bad = || {
        C14nError(format!(
            "unknown reference &{};",
            String::from_utf8_lossy(name)
        ))
    };
    if let Some(num) = name.strip_prefix(b"#") {
        let (digits, radix) = match num.strip_prefix(b"x") {
            Some(hex) => (hex, 16),
            None => (num, 10),
        };
        let s = std::str::from_utf8(digits).map_err(|_| bad())?;
        let n = u32::from_str_radix(s, radix).map_err(|_| bad())?;
        return char::from_u32(n).filter(|&c| c != '\0').ok_or_else(bad);
    }
    match name {
        b"lt" => Ok('<'),
        b"gt" => Ok('>'),
        b"amp" => Ok('&'),
        b"apos" => Ok('\''),
        b"quot" => Ok('"'),
        _ => Err(bad()),
    }
}

/// An attribute value as the XML spec normalizes it for CDATA attributes: references are
/// replaced and each literal whitespace character (after line-end normalization) becomes a
/// space; characters written as references are kept as they are.
pub(super) fn normalize_attr(raw: &[u8]) -> Result<Cow<'_, [u8]>, C14nError> {
    if !raw
        .iter()
        .any(|&b| matches!(b, b'&' | b'\r' | b'\n' | b'\t'))
    {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'&' => {
                let end = raw[i..]
                    .iter()
                    .position(|&b| b == b';')
                    .ok_or_else(|| err("unterminated reference in an attribute"))?;
                let c = resolve_reference(&raw[i + 1..i + end])?;
                let mut tmp = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                i += end + 1;
                continue;
            }
            b'\r' => {
                out.push(b' ');
                if raw.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' | b'\t' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Ok(Cow::Owned(out))
}
