//! Leaf helpers every layer uses: the public form of document ids and the hub's clock. They
//! depend on nothing in the crate, so audit, store and hub can all use them without a module
//! circle (audit entries name documents and times; the hub makes both).

use std::time::{SystemTime, UNIX_EPOCH};

/// The public id of a document: its sequence number as 16 lower-case hex digits.
pub fn format_id(seq: u64) -> String {
    format!("{seq:016x}")
}

/// Parses a public id; anything malformed is simply "not found".
pub fn parse_id(id: &str) -> Option<u64> {
    if id.len() != 16 {
        return None;
    }
    u64::from_str_radix(id, 16).ok()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 UTC text for a millisecond timestamp.
pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_other_shapes() {
        assert_eq!(format_id(255), "00000000000000ff");
        assert_eq!(parse_id(&format_id(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_id("ff"), None);
        assert_eq!(parse_id("zzzzzzzzzzzzzzzz"), None);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
