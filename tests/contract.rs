//! The documented contract matches the code: every error code the source can answer is in
//! the README's table and in the OpenAPI document's `ErrorCode`, and nothing else is; the
//! hub serves that document at `/v1/openapi.json`. (schemathesis checks the API against it
//! in `.ci/run`, see `scripts/schemathesis.sh`.)

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use http::StatusCode;
use lienthong::client::HttpVersion;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// The string literals after `=> ` inside the body of `fn name` in `file`.
fn match_arms(file: &str, name: &str) -> BTreeSet<String> {
    let text = read(file);
    let start = text
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("{file}: fn {name}"));
    let body = &text[start..];
    let end = body.find("\n    }\n").unwrap_or(body.len());
    literals_after(&body[..end], "=> \"")
}

/// Every `"code"` that directly follows `marker`.
fn literals_after(text: &str, marker: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        rest = &rest[i + marker.len()..];
        if let Some(j) = rest.find('"') {
            out.insert(rest[..j].to_owned());
        }
    }
    out
}

/// The code in each `ApiError::new(StatusCode::…, "code", …)` (and the `forbidden("code"`
/// helper) under src/http.
fn http_codes() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http")).unwrap()
    {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut rest = flat.as_str();
        while let Some(i) = rest.find("ApiError::new(") {
            rest = &rest[i + "ApiError::new(".len()..];
            let after_status = &rest[rest.find(',').unwrap() + 1..];
            let after_status = after_status.trim_start();
            if let Some(code) = after_status.strip_prefix('"') {
                out.insert(code[..code.find('"').unwrap()].to_owned());
            }
        }
        out.extend(literals_after(&flat, "forbidden( \""));
        out.extend(literals_after(&flat, "forbidden(\""));
    }
    out
}

fn source_codes() -> BTreeSet<String> {
    let mut codes = match_arms("src/hub/mod.rs", "code");
    codes.extend(match_arms("src/edxml/mod.rs", "code"));
    codes.extend(match_arms("src/dsig/mod.rs", "as_str"));
    codes.extend(http_codes());
    codes
}

fn openapi_codes(spec: &serde_json::Value) -> BTreeSet<String> {
    spec["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn backticked(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_error_code_is_documented_and_every_documented_code_exists() {
    let source = source_codes();
    assert!(
        source.len() > 30,
        "the scan found too few codes: {source:?}"
    );
    let text = read("README.md");
    let start = text.find("| code | status | when |").unwrap();
    let table: String = text[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').nth(1).unwrap().to_owned() + " ")
        .collect();
    let readme = backticked(&table);
    let spec: serde_json::Value = serde_json::from_str(&read("docs/openapi.json")).unwrap();
    let openapi = openapi_codes(&spec);
    let missing_readme: Vec<_> = source.difference(&readme).collect();
    let extra_readme: Vec<_> = readme.difference(&source).collect();
    let missing_openapi: Vec<_> = source.difference(&openapi).collect();
    let extra_openapi: Vec<_> = openapi.difference(&source).collect();
    assert!(
        missing_readme.is_empty() && extra_readme.is_empty(),
        "README table: missing {missing_readme:?}, not in the code {extra_readme:?}"
    );
    assert!(
        missing_openapi.is_empty() && extra_openapi.is_empty(),
        "OpenAPI ErrorCode: missing {missing_openapi:?}, not in the code {extra_openapi:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_serves_its_openapi_document() {
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    let r = get(&hub.client(A, HttpVersion::Auto), "/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let served: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let file: serde_json::Value = serde_json::from_str(&read("docs/openapi.json")).unwrap();
    assert_eq!(served, file);
    assert_eq!(served["openapi"], "3.1.0");
    // Every route the API dispatches is a path of the document.
    let api = read("src/http/api.rs");
    for path in served["paths"].as_object().unwrap().keys() {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let pattern = segments
            .iter()
            .map(|s| {
                if s.starts_with('{') {
                    s.trim_matches(|c| c == '{' || c == '}').to_owned()
                } else {
                    format!("\"{s}\"")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        assert!(
            api.contains(&format!("[{pattern}]")) || path == "/v1/audit/export",
            "{path} is documented but not routed ([{pattern}])"
        );
    }
}

/// Every metric name the source registers (`counter!`, `gauge!`, `histogram!`), whitespace
/// and line breaks inside the macro call included.
fn source_metrics() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let flat: String = text.split_whitespace().collect::<Vec<_>>().join("");
            for mac in [
                "counter!(\"",
                "gauge!(\"",
                "histogram!(\"",
                "GaugeGuard::new(\"",
                // The described metrics table (src/daemon/metrics_setup.rs).
                "(Counter,\"",
                "(Gauge,\"",
                "(Histogram,\"",
            ] {
                out.extend(literals_after(&flat, mac));
            }
        }
    }
    out
}

#[test]
fn docs_metrics_lists_every_exported_metric() {
    let metrics = source_metrics();
    assert!(
        metrics.len() > 25,
        "the scan found too few metrics: {metrics:?}"
    );
    let doc = backticked(&read("docs/metrics.md"));
    let missing: Vec<_> = metrics.iter().filter(|m| !doc.contains(*m)).collect();
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
}
