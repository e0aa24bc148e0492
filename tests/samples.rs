//! Every real packet in tests/data/edxml (copied from the shared samples; provenance in its
//! README) is either accepted or refused with a precise error, with the agencies it names in a
//! test directory.

mod common;

use common::*;
use http::StatusCode;
use lienthong::client::HttpVersion;

const SAMPLE_DIRECTORY: &str = r#"
[[agency]]
id = "000.00.00.G22"
name = "Văn phòng Chính phủ"
[[agency]]
id = "000.00.00.H41"
name = "UBND Tỉnh Nghệ An"
[[agency]]
id = "000.00.00.H14"
name = "UBND Tỉnh Cao Bằng"
[[agency]]
id = "000.00.00.G17"
name = "Sở TTTT Hải Phòng"
[[agency]]
id = "000.00.15.H51"
name = "Trung tâm test"
"#;

/// (file, submitting agency, expected status when signatures are only recorded, expected error
/// code or "" when accepted, expected recipients when accepted, signature verdict or "" when the
/// packet is refused before its signature is looked at). None of the signatures verifies: the
/// certificates are truncated or copied between files (see the samples' README); xmlsec1
/// agrees on the 2019 packet's digest (tests/signatures.rs).
type Expected = (
    &'static str,
    &'static str,
    u16,
    &'static str,
    &'static [&'static str],
    &'static str,
);
const EXPECTED: &[Expected] = &[
    (
        "received-2019_vpcp-test.edxml",
        "000.00.15.H51",
        201,
        "",
        &["000.00.15.H51"],
        "digest_mismatch",
    ),
    (
        "received-2025_gateway-b.edxml",
        "000.00.00.G22",
        422,
        "invalid_organ_id",
        &[],
        "",
    ),
    (
        "received-2025_gateway-pdf.edxml",
        "000.00.00.G22",
        422,
        "invalid_organ_id",
        &[],
        "",
    ),
    (
        "vnpt-sdk_edoc_new.edxml",
        "000.00.00.G22",
        400,
        "malformed_xml",
        &[],
        "",
    ),
    (
        "vnpt-sdk_edoc_replacement.edxml",
        "000.00.00.G22",
        201,
        "",
        &["000.00.00.H41", "000.00.00.H14", "000.00.00.G17"],
        "malformed_signature",
    ),
    (
        "vnpt-sdk_edoc_revocation.edxml",
        "000.00.00.G22",
        201,
        "",
        // Nobody had pulled the revoked document: it left their queues, and nobody needs
        // the revocation itself.
        &[],
        "malformed_signature",
    ),
    (
        "vnpt-sdk_edoc_update.edxml",
        "000.00.00.G22",
        201,
        "",
        &["000.00.00.H41", "000.00.00.H14", "000.00.00.G17"],
        "malformed_signature",
    ),
    (
        "vnpt-sdk_status.edxml",
        "000.00.00.H41",
        201,
        "",
        &["000.00.00.G22"],
        "signature_missing",
    ),
    (
        "vnpt-sdk_status_acceptance_03.edxml",
        "000.00.00.H41",
        201,
        "",
        &["000.00.00.G22"],
        "signature_missing",
    ),
    (
        "vnpt-sdk_status_assignment_04.edxml",
        "000.00.00.H41",
        201,
        "",
        &["000.00.00.G22"],
        "signature_missing",
    ),
    (
        "vnpt-sdk_status_cancellation_13.edxml",
        "000.00.00.G22",
        201,
        "",
        &["000.00.00.H41"],
        "signature_missing",
    ),
    (
        "vnpt-sdk_status_change-acceptance_15.edxml",
        "000.00.00.H41",
        201,
        "",
        &["000.00.00.G22"],
        "signature_missing",
    ),
    (
        "vnpt-sdk_status_change-rejection_16.edxml",
        "000.00.00.H41",
        201,
        "",
        &["000.00.00.G22"],
        "signature_missing",
    ),
    (
        "vnpt-sdk_status_finish_06.edxml",
        "000.00.00.H41",
        201,
        "",
        &["000.00.00.G22"],
        "signature_missing",
    ),
    (
        "vnpt-sdk_status_inbox_01.edxml",
        "000.00.00.H41",
        201,
        "",
        &["000.00.00.G22"],
        "signature_missing",
    ),
    (
        "vnpt-sdk_status_processing_05.edxml",
        "000.00.00.H41",
        201,
        "",
        &["000.00.00.G22"],
        "signature_missing",
    ),
    (
        "vnpt-sdk_status_rejection_02.edxml",
        "000.00.00.H41",
        201,
        "",
        &["000.00.00.G22"],
        "signature_missing",
    ),
];

fn samples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/edxml")
}

#[test]
fn the_table_lists_every_sample() {
    let samples = samples_dir();
    let mut files: Vec<String> = std::fs::read_dir(&samples)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the samples live in tests/data/edxml)",
                samples.display()
            )
        })
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".edxml"))
        .collect();
    files.sort();
    let listed: Vec<&str> = EXPECTED.iter().map(|e| e.0).collect();
    assert_eq!(files, listed, "every sample has an expected outcome");
}

/// Policy `require` (the default): every sample is refused, each with its precise reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_is_refused_precisely_when_signatures_are_required() {
    let samples = samples_dir();
    let mut hub = TestHub::start(SAMPLE_DIRECTORY, "");
    for &(file, agency, status, code, _, verdict) in EXPECTED {
        let body = std::fs::read(samples.join(file)).unwrap();
        let c = hub.client(agency, HttpVersion::Auto);
        let r = submit(&c, body).await;
        let (want_status, want_code) = if status == 201 {
            (422, verdict)
        } else {
            (status, code)
        };
        assert_eq!(r.status.as_u16(), want_status, "{file}: {:?}", r.json());
        assert_eq!(error_code(&r), want_code, "{file}: {:?}", r.json());
    }
    // Nothing was stored, and the hub is still up.
    let g22 = hub.client("000.00.00.G22", HttpVersion::Auto);
    assert!(inbox(&g22, "limit=100").await.is_empty());
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_is_accepted_or_refused_precisely_when_signatures_are_recorded() {
    let samples = samples_dir();
    let mut hub = TestHub::start(SAMPLE_DIRECTORY, "[signature]\npolicy = \"record\"\n");
    // The documents the samples' revoke, update, replace and status packets refer to, sent
    // first by their sender (a notice or revocation about a document the hub never saw is
    // refused with unknown_document).
    let g22 = hub.client("000.00.00.G22", HttpVersion::Auto);
    for (n, id) in [
        "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT",
        "000.00.00.G22,2014/01/30,7806/VPCP-TTĐT",
        "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT",
    ]
    .iter()
    .enumerate()
    {
        let doc = lienthong::edxml::NewDocument {
            from: "000.00.00.G22".into(),
            from_name: "Văn phòng Chính phủ".into(),
            to: ["000.00.00.H41", "000.00.00.H14", "000.00.00.G17"]
                .iter()
                .map(|t| (t.to_string(), "UBND".to_string()))
                .collect(),
            document_id: id.to_string(),
            code_number: format!("{n}"),
            code_notation: "VPCP-TTĐT".into(),
            subject: format!("Văn bản gốc {n}"),
            date: "2015/09/30".into(),
            attachments: vec![],
        };
        let body = lienthong::edxml::compose_document(&doc).into_bytes();
        assert_eq!(submit(&g22, body).await.status, StatusCode::CREATED);
    }
    let mut verdicts = std::collections::HashMap::new();
    for &(file, agency, status, code, recipients, verdict) in EXPECTED {
        let body = std::fs::read(samples.join(file)).unwrap();
        let c = hub.client(agency, HttpVersion::Auto);
        let r = submit(&c, body.clone()).await;
        assert_eq!(r.status.as_u16(), status, "{file}: {:?}", r.json());
        if status == 201 {
            assert_eq!(
                r.json()["recipients"],
                serde_json::json!(recipients),
                "{file}"
            );
            let id = r.json()["id"].as_str().unwrap().to_owned();
            let fetched = get(&c, &format!("/v1/documents/{id}")).await;
            assert_eq!(
                fetched.body.as_ref(),
                body.as_slice(),
                "{file} is stored byte for byte"
            );
            verdicts.insert(id, verdict);
        } else {
            assert_eq!(error_code(&r), code, "{file}: {:?}", r.json());
        }
    }
    // Status notices reached the senders of the documents they answer.
    let g22 = hub.client("000.00.00.G22", HttpVersion::Auto);
    let items = inbox(&g22, "limit=100").await;
    let statuses: Vec<&str> = items
        .iter()
        .filter(|i| i["kind"] == "status")
        .filter_map(|i| i["status_code"].as_str())
        .collect();
    assert_eq!(statuses.len(), 9, "{items:?}");
    assert!(statuses.contains(&"06"));
    // The stored verdict is shown in inbox metadata.
    let mut seen = std::collections::HashSet::new();
    for agency in [
        "000.00.00.G22",
        "000.00.00.H41",
        "000.00.15.H51",
        "000.00.00.H14",
        "000.00.00.G17",
    ] {
        let c = hub.client(agency, HttpVersion::Auto);
        let listed = if agency == "000.00.00.G22" {
            items.clone()
        } else {
            inbox(&c, "limit=100").await
        };
        for i in listed {
            let id = i["id"].as_str().unwrap();
            let Some(want) = verdicts.get(id) else {
                // One of the documents sent first.
                assert_eq!(i["verdict"], "signature_missing", "{i}");
                continue;
            };
            assert_eq!(i["verdict"], *want, "{i}");
            assert!(i["signer"].is_null());
            seen.insert(id.to_owned());
        }
    }
    // Every accepted sample was listed, except the revocation nobody needed.
    assert_eq!(seen.len(), verdicts.len() - 1);
    let r = get(&g22, "/v1/inbox").await;
    assert_eq!(r.status, StatusCode::OK);
    hub.stop();
}
