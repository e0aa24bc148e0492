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
