//! The JSON of an inbox page, written in one pass into one buffer sized up front.
//!
//! A page with bodies is mostly base64 (50 packets of 4 KiB: ~280 KB). Going through
//! `serde_json::Value` and `to_vec` built a tree of the page, escaped every base64 character
//! one by one (there is nothing to escape in base64) and grew the buffer by doubling: the
//! profile of `bench --mode pull` had JSON serialization at 12 % and malloc/realloc/memcpy
//! at 25 % of the hub. Here each item's metadata is serialized by serde straight into the
//! buffer and its body is base64-encoded in place after it.

use base64::Engine as _;

use crate::hub::InboxItem;

/// `{"items":[…]}` with each item's `body` (standard base64) when it has one.
pub fn inbox_json(items: &[InboxItem]) -> Vec<u8> {
    let size: usize = items
        .iter()
        .map(|i| 1024 + i.body.as_ref().map_or(0, |b| b.len().div_ceil(3) * 4 + 16))
        .sum();
    let mut out = Vec::with_capacity(size + 16);
    out.extend_from_slice(b"{\"items\":[");
    for (k, item) in items.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, item).expect("inbox items serialize");
        if let Some(body) = &item.body {
            // An item is a JSON object: reopen it before its closing brace.
            assert_eq!(
                out.pop(),
                Some(b'}'),
                "an inbox item serializes as an object"
            );
            out.extend_from_slice(b",\"body\":\"");
            let at = out.len();
            out.resize(at + body.len().div_ceil(3) * 4, 0);
            let n = base64::engine::general_purpose::STANDARD
                .encode_slice(body, &mut out[at..])
                .expect("the buffer was sized for the encoding");
            out.truncate(at + n);
            out.extend_from_slice(b"\"}");
        }
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edxml::Kind;

    fn item(id: &str, body: Option<Vec<u8>>) -> InboxItem {
        InboxItem {
            id: id.into(),
            kind: Kind::Edoc,
            from: "000.00.01.H13".into(),
            document_id: Some("000.00.01.H13,2026/12/01,1/LT".into()),
            subject: Some("Công văn \"khẩn\"\n".into()),
            status_code: None,
            response_for: None,
            size: body.as_ref().map_or(0, |b| b.len() as u64),
            sha256: "00".repeat(32),
            received_at: "2026-12-01T00:00:00Z".into(),
            has_signature: true,
            verdict: Some("verified".into()),
            signer: None,
            acts_on: None,
            replaces: vec![],
            route: vec![],
            lease_expires_at: "2026-12-01T00:05:00Z".into(),
            deliveries: 1,
            pdf_signatures: vec![],
            body,
        }
    }

    #[test]
    fn the_page_is_the_json_serde_would_write_plus_bodies() {
        let bodies: Vec<Option<Vec<u8>>> = vec![
            Some(b"<edXMLEnvelope>\xff\x00 \"\\</edXMLEnvelope>".to_vec()),
            None,
            Some(Vec::new()),
            Some((0..=255u8).cycle().take(4099).collect()),
        ];
        let items: Vec<InboxItem> = bodies
            .iter()
            .enumerate()
            .map(|(k, b)| item(&format!("{k:016}"), b.clone()))
            .collect();
        let page: serde_json::Value = serde_json::from_slice(&inbox_json(&items)).unwrap();
        let listed = page["items"].as_array().unwrap();
        assert_eq!(listed.len(), items.len());
        for ((got, want), body) in listed.iter().zip(&items).zip(&bodies) {
            let mut meta = got.clone();
            let b64 = meta.as_object_mut().unwrap().remove("body");
            assert_eq!(meta, serde_json::to_value(want).unwrap());
            match (b64, body) {
                (None, None) => {}
                (Some(b64), Some(body)) => assert_eq!(
                    &base64::engine::general_purpose::STANDARD
                        .decode(b64.as_str().unwrap())
                        .unwrap(),
                    body
                ),
                other => panic!("body mismatch: {other:?}"),
            }
        }
        assert_eq!(inbox_json(&[]), b"{\"items\":[]}");
    }
}
