//! The API's transports — HTTPS (HTTP/1.1 and HTTP/2 over mutual TLS) and HTTP/3 over QUIC —
//! and the plain ops listener.
//!
//! A thin adapter: it authenticates the peer, decodes the request, calls one [`crate::hub::Hub`]
//! method and encodes the answer. Only this layer knows HTTP status codes.

mod api;
mod body;
mod error;
pub mod h3;
mod ops;
mod page;
pub mod query;
mod refuse;
mod server;
mod stream;

pub use api::{Api, ApiLimits};

/// A request body any transport can hand the API: hyper's `Incoming` for HTTP/1.1 and
/// HTTP/2, an adapter's for HTTP/3. The API never names a transport's body type.
pub trait ApiBody:
    http_body::Body<
        Data = bytes::Bytes,
        Error: Into<Box<dyn std::error::Error + Send + Sync>> + std::fmt::Display,
    > + Send
    + Unpin
    + 'static
{
}

impl<B> ApiBody for B where
    B: http_body::Body<
            Data = bytes::Bytes,
            Error: Into<Box<dyn std::error::Error + Send + Sync>> + std::fmt::Display,
        > + Send
        + Unpin
        + 'static
{
}
pub use error::ApiError;
pub use ops::{OpsState, Readiness, run_ops};
pub use server::{Connections, ServerLimits, run_https};
