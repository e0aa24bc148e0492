//! The attachments of an accepted packet (`AttachmentEncoded/Attachment`): name, content
//! type and the base64 content, read only when something needs the documents themselves
//! (the PDF signature check). The routing parse ([`super::parse`]) skips them unread.

use base64::Engine;
use quick_xml::Reader;
use quick_xml::events::Event;

/// One attachment as the packet carries it.
#[derive(Debug, Clone, Default)]
pub struct EncodedAttachment {
    pub name: String,
    pub content_type: String,
    /// `ContentTransferEncoded`: base64, as in the packet (line breaks included).
    pub encoded: Vec<u8>,
}

impl EncodedAttachment {
    /// Whether the packet says this is a PDF (by content type or file name).
    pub fn is_pdf(&self) -> bool {
        self.content_type.eq_ignore_ascii_case("application/pdf")
            || self.name.to_ascii_lowercase().ends_with(".pdf")
    }

    /// The attachment's bytes (base64 with any whitespace between its characters).
    pub fn decode(&self) -> Result<Vec<u8>, String> {
        let compact: Vec<u8> = self
            .encoded
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| format!("the attachment is not base64: {e}"))
    }
}

/// The attachments of `body`, a packet [`super::parse`] accepted (so well-formed and within
/// its limits), in order.
pub fn attachments(body: &[u8]) -> Vec<EncodedAttachment> {
    let mut reader = Reader::from_reader(body);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut out: Vec<EncodedAttachment> = Vec::new();
    loop {
        let event = match reader.read_event() {
            Ok(Event::Eof) | Err(_) => break,
            Ok(e) => e,
        };
        match event {
            Event::Start(e) => {
                let local = e.local_name().into_inner().to_vec();
                if local == b"Attachment" && path.len() == 2 && path[1] == b"AttachmentEncoded" {
                    out.push(EncodedAttachment::default());
                }
                path.push(local);
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) if path.len() == 4 && path[2] == b"Attachment" => {
                let Some(a) = out.last_mut() else { continue };
                let text = t.decode().map(|s| s.into_owned()).unwrap_or_default();
                match path[3].as_slice() {
                    b"AttachmentName" => a.name.push_str(text.trim()),
                    b"ContentType" => a.content_type.push_str(text.trim()),
                    b"ContentTransferEncoded" => a.encoded.extend_from_slice(text.as_bytes()),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    out
}
