//! Composes valid edXML packets, for `lienthong edxml new`, demos, tests and benchmarks.
//!
//! Output follows the element order of the national platform's samples, with the `edXML:`
//! prefix, so agency software that is strict about order still reads it.

use std::fmt::Write;

use base64::Engine;
use quick_xml::escape::escape;

use super::NAMESPACE;

/// A file to attach, base64-encoded into `AttachmentEncoded`.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// What a new document says.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub from: String,
    pub from_name: String,
    /// `(OrganId, OrganName)` per recipient.
    pub to: Vec<(String, String)>,
    pub document_id: String,
    pub code_number: String,
    pub code_notation: String,
    pub subject: String,
    /// `yyyy/MM/dd`.
    pub date: String,
    pub attachments: Vec<Attachment>,
}

fn organ(out: &mut String, tag: &str, id: &str, name: &str) {
    let _ = write!(
        out,
        "      <edXML:{tag}>\n        <edXML:OrganId>{}</edXML:OrganId>\n        \
         <edXML:OrganName>{}</edXML:OrganName>\n      </edXML:{tag}>\n",
        escape(id),
        escape(name)
    );
}

/// Writes a new-document packet (BussinessDocType 0).
pub fn compose_document(doc: &NewDocument) -> String {
    let mut out = String::with_capacity(
        2048 + doc
            .attachments
            .iter()
            .map(|a| a.data.len() * 4 / 3 + 256)
            .sum::<usize>(),
    );
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<edXML:edXML xmlns:edXML=\"{NAMESPACE}\">\n\
         <edXML:edXMLEnvelope>\n  <edXML:edXMLHeader>\n    <edXML:MessageHeader>\n"
    );
    organ(&mut out, "From", &doc.from, &doc.from_name);
    for (id, name) in &doc.to {
        organ(&mut out, "To", id, name);
    }
    let _ = write!(
        out,
        "      <edXML:DocumentId>{}</edXML:DocumentId>\n      <edXML:Code>\n        \
         <edXML:CodeNumber>{}</edXML:CodeNumber>\n        <edXML:CodeNotation>{}</edXML:CodeNotation>\n      \
         </edXML:Code>\n      <edXML:PromulgationInfo>\n        <edXML:PromulgationDate>{}</edXML:PromulgationDate>\n      \
         </edXML:PromulgationInfo>\n      <edXML:Subject>{}</edXML:Subject>\n",
        escape(&doc.document_id),
        escape(&doc.code_number),
        escape(&doc.code_notation),
        escape(&doc.date),
        escape(&doc.subject),
    );
    let _ = write!(
        out,
        "    </edXML:MessageHeader>\n    <edXML:TraceHeaderList>\n      <edXML:Bussiness>\n        \
         <edXML:BussinessDocType>0</edXML:BussinessDocType>\n      </edXML:Bussiness>\n    \
         </edXML:TraceHeaderList>\n  </edXML:edXMLHeader>\n  <edXML:edXMLBody>\n    \
         <edXML:edXMLManifest version=\"1.0\">\n"
    );
    for (i, a) in doc.attachments.iter().enumerate() {
        let _ = write!(
            out,
            "      <edXML:Reference>\n        <edXML:ContentId>cid:{}</edXML:ContentId>\n        \
             <edXML:ContentType>{}</edXML:ContentType>\n        <edXML:AttachmentName>{}</edXML:AttachmentName>\n      \
             </edXML:Reference>\n",
            i + 1,
            escape(&a.content_type),
            escape(&a.name)
        );
    }
    out.push_str("    </edXML:edXMLManifest>\n  </edXML:edXMLBody>\n</edXML:edXMLEnvelope>\n");
    if !doc.attachments.is_empty() {
        out.push_str("<edXML:AttachmentEncoded>\n");
        for (i, a) in doc.attachments.iter().enumerate() {
            let _ = write!(
                out,
                "  <edXML:Attachment>\n    <edXML:ContentId>cid:{}</edXML:ContentId>\n    \
                 <edXML:AttachmentName>{}</edXML:AttachmentName>\n    <edXML:ContentType>{}</edXML:ContentType>\n    \
                 <edXML:ContentTransferEncoded>",
                i + 1,
                escape(&a.name),
                escape(&a.content_type)
            );
            base64::engine::general_purpose::STANDARD.encode_string(&a.data, &mut out);
            out.push_str("</edXML:ContentTransferEncoded>\n  </edXML:Attachment>\n");
        }
        out.push_str("</edXML:AttachmentEncoded>\n");
    }
    out.push_str("</edXML:edXML>\n");
    out
}

/// Writes a status packet from `from` about `document_id` (sent by `sender`).
pub fn compose_status(
    from: &str,
    sender: &str,
    document_id: &str,
    code: &str,
    description: &str,
    timestamp: &str,
) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<edXML:edXML xmlns:edXML=\"{NAMESPACE}\">\n\
         <edXML:edXMLEnvelope>\n  <edXML:edXMLHeader>\n    <edXML:MessageHeader>\n      \
         <edXML:From><edXML:OrganId>{}</edXML:OrganId></edXML:From>\n      \
         <edXML:ResponseFor><edXML:OrganId>{}</edXML:OrganId><edXML:DocumentId>{}</edXML:DocumentId></edXML:ResponseFor>\n      \
         <edXML:StatusCode>{}</edXML:StatusCode>\n      <edXML:Description>{}</edXML:Description>\n      \
         <edXML:Timestamp>{}</edXML:Timestamp>\n    </edXML:MessageHeader>\n  </edXML:edXMLHeader>\n\
         </edXML:edXMLEnvelope>\n</edXML:edXML>\n",
        escape(from),
        escape(sender),
        escape(document_id),
        escape(code),
        escape(description),
        escape(timestamp)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edxml::{Kind, parse};

    #[test]
    fn composed_packets_parse() {
        let doc = NewDocument {
            from: "000.00.01.H13".into(),
            from_name: "Sở <Nội vụ>".into(),
            to: vec![
                ("000.00.02.H13".into(), "B".into()),
                ("000.00.03.H13".into(), "C".into()),
            ],
            document_id: "000.00.01.H13,2026/11/28,1/SNV".into(),
            code_number: "1".into(),
            code_notation: "SNV".into(),
            subject: "Về việc A & B".into(),
            date: "2026/11/28".into(),
            attachments: vec![Attachment {
                name: "a.txt".into(),
                content_type: "text/plain".into(),
                data: b"hello".to_vec(),
            }],
        };
        let p = parse(compose_document(&doc).as_bytes()).unwrap();
        assert_eq!(p.to.len(), 2);
        assert_eq!(p.subject.as_deref(), Some("Về việc A & B"));
        assert_eq!(p.attachments, 1);
        let s = compose_status(
            "000.00.02.H13",
            "000.00.01.H13",
            "X",
            "03",
            "ok",
            "2026/11/28 10:00:00",
        );
        let p = parse(s.as_bytes()).unwrap();
        assert_eq!(p.kind, Kind::Status);
        assert_eq!(p.from, "000.00.02.H13");
    }
}
