//! Request bodies handed to the core's upload budget ([`crate::hub::uploads`]): an HTTP body
//! as a [`BodySource`], and what happens to a refused body.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;

use super::ApiBody;
use crate::hub::BodySource;

/// The data frames of an HTTP/1.1 or HTTP/2 body (trailers are skipped).
pub(super) struct Frames<'a, B>(pub &'a mut B);

impl<B: ApiBody> BodySource for Frames<'_, B> {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, String>> {
        loop {
            match self.0.frame().await? {
                Err(e) => return Some(Err(e.to_string())),
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data));
                    }
                }
            }
        }
    }
}

/// Keeps a refused upload's body open a little longer, reading and dropping what still comes:
/// dropped at once, the HTTP/2 stream is reset (and an HTTP/1.1 connection with unread bytes
/// is reset by the kernel) before the refusal reaches the client, which then sees a
/// connection error instead of its 403, 408, 413 or 429.
pub(super) fn linger<B: ApiBody>(mut body: B) {
    tokio::spawn(async move {
        let drain = async {
            let mut seen = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len());
                if seen > 1 << 20 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    });
}
