//! The HTTPS transport (HTTP/1.1 and HTTP/2 over mutual TLS) and the plain ops listener.
//!
//! A thin adapter: it authenticates the peer, decodes the request, calls one [`crate::hub::Hub`]
//! method and encodes the answer. Only this layer knows HTTP status codes.

mod api;
mod budget;
mod error;
mod ops;
pub mod query;
mod refuse;
mod server;
mod stream;

pub use api::{Api, ApiLimits};
pub use budget::BodyLimits;
pub use error::ApiError;
pub use ops::{OpsState, Readiness, run_ops};
pub use server::{Connections, ServerLimits, run_https};
