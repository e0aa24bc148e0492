//! The byte range a signature covers: `[0 a b c]`, whose gap `a..b` is exactly this
//! signature's own `/Contents` hex string, and whose end `b + c` is the end of a revision
//! (`%%EOF`). Anything else lets bytes be signed that are not the document, or the document
//! be changed without touching the signed bytes.

use super::fields::SigField;
use super::{Problem, Verdict};

/// The two signed ranges and where the signed revision ends.
#[derive(Debug, Clone)]
pub struct Ranges {
    pub first: std::ops::Range<usize>,
    pub second: std::ops::Range<usize>,
    pub revision_end: usize,
}

fn malformed(f: &SigField, why: impl std::fmt::Display) -> Problem {
    Problem::new(Verdict::ByterangeMalformed, format!("{}: {why}", f.name))
}

/// Checks `f`'s ByteRange against the file (see the module docs).
pub fn check(pdf: &[u8], f: &SigField) -> Result<Ranges, Problem> {
    let [zero, a, b, c] = f.byte_range[..] else {
        return Err(malformed(f, "ByteRange must have four numbers"));
    };
    let to = |n: i64| usize::try_from(n).map_err(|_| malformed(f, "a negative ByteRange number"));
    let (zero, a, b, c) = (to(zero)?, to(a)?, to(b)?, to(c)?);
    if zero != 0 {
        return Err(malformed(f, "ByteRange must start at 0"));
    }
    let end = b
        .checked_add(c)
        .filter(|&e| a < b && e <= pdf.len())
        .ok_or_else(|| malformed(f, "ByteRange reaches past the file or overlaps itself"))?;
    let gap = &pdf[a..b];
    let hex = gap
        .strip_prefix(b"<")
        .and_then(|g| g.strip_suffix(b">"))
        .ok_or_else(|| malformed(f, "the unsigned gap is not exactly the Contents hex string"))?;
    if hex.len() % 2 != 0 || decode_hex(hex).as_deref() != Some(f.contents.as_slice()) {
        return Err(malformed(
            f,
            "the unsigned gap is not this signature's Contents",
        ));
    }
    let revision = &pdf[..end];
    let trimmed = revision.trim_ascii_end();
    if !trimmed.ends_with(b"%%EOF") || revision.len() - trimmed.len() > 2 {
        return Err(malformed(
            f,
            "the signed range does not end where a revision ends",
        ));
    }
    Ok(Ranges {
        first: 0..a,
        second: b..end,
        revision_end: end,
    })
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}
