//! The API's error answer: a status and a stable machine-readable code, as
//! `{"error":{"code":"…","message":"…"}}`.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::hub::HubError;
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 and 503 answers).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut b = Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(s) = self.retry_after {
            b = b.header(http::header::RETRY_AFTER, s);
        }
        b.body(Full::new(Bytes::from(body.to_string())))
            .expect("valid response")
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        use crate::edxml::EdxmlError;
        let status = match &e {
            HubError::Edxml(EdxmlError::Malformed(_) | EdxmlError::WrongRoot(_)) => {
                StatusCode::BAD_REQUEST
            }
            HubError::Edxml(_)
            | HubError::UnknownRecipients(_)
            | HubError::Signature(_)
            | HubError::UnknownDocument(_)
            | HubError::RoutingLoop { .. }
            | HubError::PdfNotTwoLayer { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            HubError::SenderMismatch { .. }
            | HubError::NoIdentity
            | HubError::UnknownAgency(_)
            | HubError::CertificateNotPinned { .. }
            | HubError::NotAnAgency
            | HubError::NotAPeer
            | HubError::SenderNotBehindPeer { .. }
            | HubError::RecipientNotBehindPeer { .. }
            | HubError::NotAnAuditor => StatusCode::FORBIDDEN,
            HubError::DuplicateDocumentId { .. } => StatusCode::CONFLICT,
            HubError::NotFound => StatusCode::NOT_FOUND,
            HubError::Cancelled => StatusCode::REQUEST_TIMEOUT,
            HubError::Busy | HubError::UploadsBusy => StatusCode::SERVICE_UNAVAILABLE,
            HubError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HubError::UploadTooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            HubError::BodyReadFailed(_) | HubError::EmptyBody => StatusCode::BAD_REQUEST,
            HubError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            // 425 Too Early: the forwarding hub retries it on its schedule.
            HubError::OriginalPending(_) => {
                StatusCode::from_u16(425).expect("425 is a status code")
            }
            HubError::Purged(_) => StatusCode::GONE,
            HubError::Invalid(_) => StatusCode::BAD_REQUEST,
            HubError::Notary(_) => StatusCode::INTERNAL_SERVER_ERROR,
            HubError::Store(StoreError::NoSpace(_)) => StatusCode::INSUFFICIENT_STORAGE,
            HubError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status.is_server_error() && !matches!(e, HubError::Busy | HubError::UploadsBusy) {
            tracing::error!(error = %e, "request failed in storage");
        }
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
            retry_after: match &e {
                HubError::Store(StoreError::Busy | StoreError::Conflict)
                | HubError::Busy
                | HubError::UploadsBusy => Some(1),
                HubError::TooMany { retry_after, .. } => Some(*retry_after),
                HubError::OriginalPending(_) => Some(5),
                _ => (status == StatusCode::SERVICE_UNAVAILABLE).then_some(5),
            },
        }
    }
}
