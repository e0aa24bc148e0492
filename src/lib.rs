//! lienthong: a store-and-forward hub for signed edXML documents between agencies.
//!
//! Layers, outermost first: [`cli`] (the binary's commands) → [`daemon`] (binds, runs, shuts
//! down) → [`http`] (mutual-TLS transport, one adapter) → [`hub`] (the rules and every state
//! change) → [`store`] (RocksDB). [`edxml`], [`directory`], [`config`], [`tls`] and [`pki`] are
//! the pieces they share; [`client`] and [`receive`] are the agency side; [`push`] drives the
//! hub's own outbound deliveries. Leaves ([`ids`], [`digest`],
//! [`signature_model`], [`cancel`], [`stats`], [`files`]) depend on no module above them: the module
//! graph has no circle.

pub mod audit;
pub mod backup;
pub mod cancel;
pub mod cli;
pub mod client;
pub mod client_h3;
pub mod config;
pub mod daemon;
pub mod digest;
pub mod directory;
pub mod dsig;
pub mod edxml;
pub mod federation;
pub mod files;
pub mod http;
pub mod hub;
pub mod ids;
pub mod jws;
pub mod load;
pub mod pdfsig;
pub mod pki;
pub mod push;
pub mod receive;
pub mod signature_model;
pub mod stats;
pub mod store;
pub mod tls;
pub mod webhook;
