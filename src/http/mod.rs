//! The HTTPS transport (HTTP/1.1 and HTTP/2 over mutual TLS) and the plain ops listener.
//!
//! A thin adapter: it authenticates the peer, decodes the request, calls one [`crate::hub::Hub`]
//! method and encodes the answer. Only this layer knows HTTP status codes.

mod api;
mod error;
mod ops;
mod server;
mod stream;

pub use api::{Api, ApiLimits};
pub use error::ApiError;
pub use ops::{OpsState, Readiness, run_ops};
pub use server::{ServerLimits, run_https};
