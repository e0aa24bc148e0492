//! Unit tests of the edXML reader (`parse.rs`).
use super::super::Kind;
use super::*;

fn doc(header_extra: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<e:edXML xmlns:e="{NAMESPACE}"><e:edXMLEnvelope><e:edXMLHeader><e:MessageHeader>
<e:To><e:OrganId>000.00.02.H13</e:OrganId></e:To>
<e:From><e:OrganId>000.00.01.H13</e:OrganId><e:OrganName>A &amp; B</e:OrganName></e:From>
<e:Subject>Hello &#x41;</e:Subject><e:DocumentId>D1</e:DocumentId>{header_extra}
</e:MessageHeader></e:edXMLHeader></e:edXMLEnvelope></e:edXML>"#
    )
}

#[test]
fn reads_any_order_and_prefix() {
    let p = parse(doc("").as_bytes()).unwrap();
    assert_eq!(p.kind, Kind::Edoc);
    assert_eq!(p.from, "000.00.01.H13");
    assert_eq!(p.to, vec!["000.00.02.H13"]);
    assert_eq!(p.subject.as_deref(), Some("Hello A"));
    assert_eq!(p.document_id.as_deref(), Some("D1"));
}

#[test]
fn refuses_junk() {
    let body = format!("1212{}", doc(""));
    assert_eq!(parse(body.as_bytes()).unwrap_err().code(), "malformed_xml");
    let body = doc("").replace(NAMESPACE, "urn:other");
    assert_eq!(parse(body.as_bytes()).unwrap_err().code(), "not_edxml");
    let long = format!("<e:Subject>{}</e:Subject>", "ắ".repeat(501));
    let body = doc("").replace("<e:Subject>Hello &#x41;</e:Subject>", &long);
    assert!(matches!(
        parse(body.as_bytes()).unwrap_err(),
        EdxmlError::FieldTooLong {
            field: "Subject",
            len: 501,
            limit: 500
        }
    ));
    let body = doc("").replace("000.00.02.H13", "null");
    assert_eq!(
        parse(body.as_bytes()).unwrap_err().code(),
        "invalid_organ_id"
    );
    let body = doc("").replace("<e:DocumentId>D1</e:DocumentId>", "");
    assert_eq!(
        parse(body.as_bytes()).unwrap_err(),
        EdxmlError::MissingField("DocumentId")
    );
    let body = doc("<!DOCTYPE x>");
    assert_eq!(parse(body.as_bytes()).unwrap_err().code(), "malformed_xml");
    let body = doc("").replace("</e:edXML>", "");
    assert_eq!(parse(body.as_bytes()).unwrap_err().code(), "malformed_xml");
}

#[test]
fn status_packet() {
    let body = format!(
        r#"<edXML xmlns="{NAMESPACE}"><edXMLEnvelope><edXMLHeader><MessageHeader>
<From><OrganId>000.00.02.H13</OrganId></From>
<ResponseFor><OrganId>000.00.01.H13</OrganId><DocumentId>D1</DocumentId></ResponseFor>
<StatusCode>03</StatusCode></MessageHeader></edXMLHeader></edXMLEnvelope></edXML>"#
    );
    let p = parse(body.as_bytes()).unwrap();
    assert_eq!(p.kind, Kind::Status);
    assert_eq!(p.status_code.as_deref(), Some("03"));
    assert_eq!(p.response_for[0].document_id, "D1");
    let bad = body.replace(">03<", ">99<");
    assert_eq!(parse(bad.as_bytes()).unwrap_err().code(), "invalid_field");
}

#[test]
fn one_reading() {
    let two_from = doc("").replace(
        "<e:From>",
        "<e:From><e:OrganId>000.00.03.H13</e:OrganId></e:From><e:From>",
    );
    assert_eq!(
        parse(two_from.as_bytes()).unwrap_err(),
        EdxmlError::DuplicateField("edXMLEnvelope/edXMLHeader/MessageHeader/From".into())
    );
    let two_ids = doc("<e:DocumentId>D2</e:DocumentId>");
    assert_eq!(
        parse(two_ids.as_bytes()).unwrap_err().code(),
        "duplicate_field"
    );
    let two_organ_ids = doc("").replace(
        "<e:OrganId>000.00.01.H13</e:OrganId>",
        "<e:OrganId>000.00.03.H13</e:OrganId><e:OrganId>000.00.01.H13</e:OrganId>",
    );
    assert_eq!(
        parse(two_organ_ids.as_bytes()).unwrap_err().code(),
        "duplicate_field"
    );
    // Several recipients are fine.
    let two_to = doc("<e:To><e:OrganId>000.00.03.H13</e:OrganId></e:To>");
    assert_eq!(parse(two_to.as_bytes()).unwrap().to.len(), 2);
    // An OrganId outside the namespace is not skipped: it is refused.
    let foreign = doc("").replace(
            "<e:OrganId>000.00.01.H13</e:OrganId>",
            "<o:OrganId xmlns:o=\"urn:x\">000.00.03.H13</o:OrganId><e:OrganId>000.00.01.H13</e:OrganId>",
        );
    assert_eq!(
        parse(foreign.as_bytes()).unwrap_err().code(),
        "wrong_namespace"
    );
    let foreign_child = doc("<x:Note xmlns:x=\"urn:x\">hi</x:Note>");
    assert_eq!(
        parse(foreign_child.as_bytes()).unwrap_err().code(),
        "wrong_namespace"
    );
}

#[test]
fn signature_holds_only_xml_dsig() {
    let sig = |inner: &str| {
        doc("").replace(
            "</e:MessageHeader></e:edXMLHeader>",
            &format!("</e:MessageHeader><Signature>{inner}</Signature></e:edXMLHeader>"),
        )
    };
    let fine = sig("<SignedInfo><Reference/></SignedInfo><SignatureValue>AA==</SignatureValue>");
    assert!(parse(fine.as_bytes()).unwrap().has_signature);
    let hidden = sig("<SignedInfo/><From><OrganId>000.00.03.H13</OrganId></From>");
    assert_eq!(
        parse(hidden.as_bytes()).unwrap_err().code(),
        "malformed_signature"
    );
    let object = sig("<SignedInfo/><Object>x</Object>");
    assert_eq!(
        parse(object.as_bytes()).unwrap_err().code(),
        "malformed_signature"
    );
}

#[test]
fn limits_and_encoding() {
    let limits = Limits::default();
    let decls: String = (0..65)
        .map(|i| format!(" xmlns:n{i}=\"urn:{i}\""))
        .collect();
    let many = doc("").replacen("<e:edXML ", &format!("<e:edXML{decls} "), 1);
    assert_eq!(
        parse(many.as_bytes()).unwrap_err(),
        EdxmlError::LimitsExceeded {
            limit: "max_attributes",
            max: 64
        }
    );
    let tight = Limits {
        max_namespace_declarations: 10,
        ..limits.clone()
    };
    assert!(matches!(
        parse_limited(
            many.as_bytes(),
            &Limits {
                max_attributes: 100,
                ..tight
            }
        )
        .unwrap_err(),
        EdxmlError::LimitsExceeded {
            limit: "max_namespace_declarations",
            ..
        }
    ));
    let deep = doc(&format!("{}{}", "<e:x>".repeat(100), "</e:x>".repeat(100)));
    assert!(matches!(
        parse(deep.as_bytes()).unwrap_err(),
        EdxmlError::LimitsExceeded {
            limit: "max_depth",
            ..
        }
    ));
    let wide = doc(&"<e:Extra/>".repeat(10_001));
    assert!(matches!(
        parse(wide.as_bytes()).unwrap_err(),
        EdxmlError::LimitsExceeded {
            limit: "max_header_elements",
            ..
        }
    ));
    let many_elements = doc("").replacen(
        "</e:edXMLEnvelope>",
        &format!(
            "<e:edXMLBody>{}</e:edXMLBody></e:edXMLEnvelope>",
            "<x/>".repeat(100_001)
        ),
        1,
    );
    assert!(matches!(
        parse(many_elements.as_bytes()).unwrap_err(),
        EdxmlError::LimitsExceeded {
            limit: "max_elements",
            ..
        }
    ));
    // Not UTF-8 anywhere (here in a comment no field reads) is refused.
    let mut latin1 = doc("<!-- caf\u{e9} -->").into_bytes();
    let at = latin1.windows(2).position(|w| w == "é".as_bytes()).unwrap();
    latin1.splice(at..at + 2, [0xE9]);
    assert_eq!(parse(&latin1).unwrap_err().code(), "malformed_xml");
    // A UTF-8 byte-order mark is accepted (XML 1.0 §4.3.3); the reader skips it.
    let bom = [&[0xEF, 0xBB, 0xBF][..], doc("").as_bytes()].concat();
    assert_eq!(parse(&bom).unwrap().from, "000.00.01.H13");
}
