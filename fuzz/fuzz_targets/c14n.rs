//! Canonicalization (all four methods, whole document and first-element subsets) on inputs the
//! edXML reader accepts as well-formed within its limits, as the hub only canonicalizes those.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lienthong::dsig::c14n::{self, C14n, Subset};

fuzz_target!(|data: &[u8]| {
    if let Err(lienthong::edxml::EdxmlError::Malformed(_) | lienthong::edxml::EdxmlError::LimitsExceeded { .. }) =
        lienthong::edxml::parse(data)
    {
        return;
    }
    let first = data.iter().position(|&b| b == b'<');
    for uri in [
        C14n::INCLUSIVE,
        C14n::INCLUSIVE_COMMENTS,
        C14n::EXCLUSIVE,
        C14n::EXCLUSIVE_COMMENTS,
    ] {
        let m = C14n::from_uri(uri, Some("#default a")).expect("known");
        let _ = c14n::canonicalize(data, Subset::Document { exclude: None }, &m, &mut |_| {});
        if let Some(start) = first {
            let _ = c14n::canonicalize(data, Subset::Element { start }, &m, &mut |_| {});
            let _ = c14n::canonicalize(
                data,
                Subset::Document { exclude: Some(start) },
                &m,
                &mut |_| {},
            );
        }
    }
});
