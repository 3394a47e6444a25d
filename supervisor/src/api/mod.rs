//! The supervisor's HTTP/1.1 API (hyper) and its client. The server listens
//! on a Unix socket, authorised per connection by SO_PEERCRED, and
//! optionally on loopback TCP with a bearer token; the engine behind it is
//! any [`crate::model::Backend`]. `docs/api.md` describes the routes and
//! `docs/openapi.yaml` their schemas.
mod auth;
mod body;
pub mod client;
mod handlers;
mod listen;
mod metrics;
pub mod routes;
pub mod server;
mod stream;

pub use client::Client;
pub use server::{serve, ApiConfig, ApiServer, TcpConfig};

use std::path::PathBuf;

/// Largest request body we read (`POST /api/v1/runs` carries a flow file).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Group whose members may use the Unix socket besides the owner and root.
pub const DEFAULT_ADMIN_GROUP: &str = "aiops-admin";

/// Failures of the API server's set-up and of the client. (The server's
/// per-request failures are HTTP responses, not errors.)
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("create the socket directory {}", .path.display())]
    SocketDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another daemon is already listening on {}", .path.display())]
    SocketInUse { path: PathBuf },
    #[error("{} exists and is not a socket; refusing to replace it", .path.display())]
    NotASocket { path: PathBuf },
    #[error("remove the stale socket {}", .path.display())]
    RemoveStale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bind {}", .path.display())]
    BindUnix {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("set the mode of {}", .path.display())]
    SocketMode {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing to listen on non-loopback address {addr} (allow_non_loopback is off)")]
    NonLoopback { addr: std::net::SocketAddr },
    #[error("bind {addr}")]
    BindTcp {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("token file {}: {reason}", .path.display())]
    TokenFile { path: PathBuf, reason: String },
    #[error("read the token file {}", .path.display())]
    ReadToken {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no aiops daemon reachable at {}", .path.display())]
    NoDaemon {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("connect to {target}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    #[error("http exchange with {target}")]
    Http {
        target: String,
        source: hyper::Error,
    },
    #[error("build the request")]
    Request { source: hyper::http::Error },
    #[error("server answered {status}: {message}")]
    Server { status: u16, message: String },
    #[error("decode the server's {what}")]
    Decode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("encode the request body")]
    Encode { source: serde_json::Error },
    #[error("write the output")]
    Write { source: std::io::Error },
    #[error("malformed event stream: {reason}")]
    EventStream { reason: String },
}
