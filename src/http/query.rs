//! Query-string parameters of the API: total functions over any input (fuzzed by
//! `fuzz/fuzz_targets/api_query.rs`), so a hostile query gets a 400, never a panic.

use http::StatusCode;

use super::error::ApiError;

/// Reads `name=<unsigned integer>` from a query string.
pub fn query_u64(query: Option<&str>, name: &str) -> Result<Option<u64>, ApiError> {
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return v.parse().map(Some).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("query parameter {name} must be a non-negative integer, got {v:?}"),
                )
            });
        }
    }
    Ok(None)
}

/// Reads `name=<text>` from a query string.
pub fn query_str<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// `since=<RFC 3339 time>` as ms since the epoch (0 when absent). Accepts the few
/// percent-escapes clients put in times (`:` and `+`).
pub fn query_time(query: Option<&str>, name: &str) -> Result<u64, ApiError> {
    let Some(t) = query_str(query, name) else {
        return Ok(0);
    };
    let t = t
        .replace("%3A", ":")
        .replace("%3a", ":")
        .replace("%2B", "+");
    time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64)
        .map_err(|_| bad(format!("{name} must be an RFC 3339 time, got {t:?}")))
}

/// `name=<hub id>` as a sequence number (0 when absent).
pub fn query_id(query: Option<&str>, name: &str) -> Result<u64, ApiError> {
    match query_str(query, name) {
        None => Ok(0),
        Some(c) => crate::ids::parse_id(c).ok_or_else(|| bad(format!("bad {name}"))),
    }
}

/// A required unsigned integer.
pub fn required_u64(query: Option<&str>, name: &str) -> Result<u64, ApiError> {
    query_u64(query, name)?.ok_or_else(|| bad(format!("{name} is required")))
}
