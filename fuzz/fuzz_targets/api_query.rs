//! The API's path and query parsing: ids, query parameters, path segments.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lienthong::http::query::{query_str, query_u64};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = s.split_once('?').unwrap_or((s, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for seg in &segments {
        if let Some(seq) = lienthong::hub::parse_id(seg) {
            assert_eq!(lienthong::hub::parse_id(&lienthong::hub::format_id(seq)), Some(seq));
        }
    }
    for name in ["limit", "wait", "cursor", "since", "size", "from", "to", "window", "tree_size"] {
        let _ = query_u64(Some(query), name);
        let _ = query_str(Some(query), name);
    }
});
