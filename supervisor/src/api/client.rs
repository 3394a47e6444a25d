//! A small client for the API, over the Unix socket or loopback TCP with a
//! bearer token; `aiopsctl` uses it when a daemon is reachable.
use super::routes::percent_encode;
use super::ApiError;
use crate::model::{Event, RunRecord, ServiceState, Stream, SubmitRequest};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Where the daemon listens when nothing says otherwise (root's daemon).
pub const SYSTEM_SOCKET: &str = "/run/aiops/api.sock";
/// Most of an error body we read to find its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Debug, Clone)]
enum Target {
    Unix(PathBuf),
    Tcp { addr: SocketAddr, token: String },
}

#[derive(Debug, Clone)]
pub struct Client {
    target: Target,
}

/// Where to look for a daemon, in order: `$AIOPS_API_SOCKET` alone if set;
/// else the user's `$XDG_RUNTIME_DIR/aiops/api.sock`, then the system
/// daemon's [`SYSTEM_SOCKET`].
pub fn default_socket_paths() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("AIOPS_API_SOCKET").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut v = Vec::new();
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        v.push(Path::new(&d).join("aiops").join("api.sock"));
    }
    v.push(PathBuf::from(SYSTEM_SOCKET));
    v
}

/// The first of [`default_socket_paths`].
pub fn default_socket_path() -> PathBuf {
    default_socket_paths()
        .into_iter()
        .next()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_SOCKET))
}

impl Client {
    pub fn unix(path: impl Into<PathBuf>) -> Client {
        Client {
            target: Target::Unix(path.into()),
        }
    }

    pub fn tcp(addr: SocketAddr, token: impl Into<String>) -> Client {
        Client {
            target: Target::Tcp {
                addr,
                token: token.into(),
            },
        }
    }

    /// A client for the first default socket where a daemon answers;
    /// [`ApiError::NoDaemon`] for the first candidate otherwise (the CLI
    /// then runs the engine in-process).
    pub async fn connect_default() -> Result<Client, ApiError> {
        let mut first_err = None;
        for path in default_socket_paths() {
            match Client::connect_unix(path).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| ApiError::NoDaemon {
            path: PathBuf::from(SYSTEM_SOCKET),
            source: std::io::ErrorKind::NotFound.into(),
        }))
    }

    /// A client for `path`, once something accepts connections there.
    pub async fn connect_unix(path: impl Into<PathBuf>) -> Result<Client, ApiError> {
        let path = path.into();
        tokio::net::UnixStream::connect(&path)
            .await
            .map_err(|source| ApiError::NoDaemon {
                path: path.clone(),
                source,
            })?;
        Ok(Client::unix(path))
    }

    fn describe(&self) -> String {
        match &self.target {
            Target::Unix(p) => p.display().to_string(),
            Target::Tcp { addr, .. } => addr.to_string(),
        }
    }

    /// One request on a fresh connection (connections are cheap locally,
    /// and a fresh one never inherits a half-read stream).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, ApiError> {
        let target = self.describe();
        let connect_err = |source| ApiError::Connect {
            target: target.clone(),
            source,
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "localhost");
        if let Target::Tcp { token, .. } = &self.target {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|source| ApiError::Request { source })?;
        let http_err = |source| ApiError::Http {
            target: target.clone(),
            source,
        };
        let mut sender = match &self.target {
            Target::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(connect_err)?;
                handshake(s).await.map_err(http_err)?
            }
            Target::Tcp { addr, .. } => {
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(connect_err)?;
                handshake(s).await.map_err(http_err)?
            }
        };
        let resp = sender.send_request(req).await.map_err(http_err)?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(server_error(resp, &target).await)
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        what: &'static str,
    ) -> Result<T, ApiError> {
        let resp = self.send(method, path, body).await?;
        let target = self.describe();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|source| ApiError::Http { target, source })?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|source| ApiError::Decode { what, source })
    }

    /// True when `/readyz` says 200.
    pub async fn ready(&self) -> Result<bool, ApiError> {
        match self.send(Method::GET, "/readyz", None).await {
            Ok(_) => Ok(true),
            Err(ApiError::Server { status: 503, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn state(&self) -> Result<ServiceState, ApiError> {
        self.json(Method::GET, "/api/v1/state", None, "state").await
    }

    pub async fn runs(&self, limit: Option<usize>) -> Result<Vec<RunRecord>, ApiError> {
        let path = match limit {
            Some(n) => format!("/api/v1/runs?limit={n}"),
            None => "/api/v1/runs".to_string(),
        };
        self.json(Method::GET, &path, None, "run list").await
    }

    pub async fn run(&self, id: &str) -> Result<RunRecord, ApiError> {
        let path = format!("/api/v1/runs/{}", percent_encode(id));
        self.json(Method::GET, &path, None, "run").await
    }

    pub async fn submit(&self, req: &SubmitRequest) -> Result<RunRecord, ApiError> {
        let body = serde_json::to_vec(req).map_err(|source| ApiError::Encode { source })?;
        self.json(Method::POST, "/api/v1/runs", Some(body), "run")
            .await
    }

    pub async fn confirm(&self, run: &str, node: &str) -> Result<RunRecord, ApiError> {
        let path = format!(
            "/api/v1/runs/{}/nodes/{}/confirm",
            percent_encode(run),
            percent_encode(node)
        );
        self.json(Method::POST, &path, None, "run").await
    }

    /// `node: None` cancels the whole run.
    pub async fn cancel(&self, run: &str, node: Option<&str>) -> Result<RunRecord, ApiError> {
        let path = match node {
            Some(n) => format!(
                "/api/v1/runs/{}/nodes/{}/cancel",
                percent_encode(run),
                percent_encode(n)
            ),
            None => format!("/api/v1/runs/{}/cancel", percent_encode(run)),
        };
        self.json(Method::POST, &path, None, "run").await
    }

    /// `GET /api/v1/audit`.
    #[cfg(target_os = "linux")]
    pub async fn audit(
        &self,
        since_ms: Option<u64>,
        run: Option<&str>,
    ) -> Result<Vec<crate::audit::AuditRecord>, ApiError> {
        let mut q = vec![];
        if let Some(ms) = since_ms {
            q.push(format!("since_ms={ms}"));
        }
        if let Some(r) = run {
            q.push(format!("run={}", percent_encode(r)));
        }
        let path = if q.is_empty() {
            "/api/v1/audit".to_string()
        } else {
            format!("/api/v1/audit?{}", q.join("&"))
        };
        self.json(Method::GET, &path, None, "audit records").await
    }

    /// `POST /api/v1/gc`.
    pub async fn gc(
        &self,
        req: &crate::model::GcRequest,
    ) -> Result<Vec<crate::model::GcEntry>, ApiError> {
        let body = serde_json::to_vec(req).map_err(|source| ApiError::Decode {
            what: "gc request",
            source,
        })?;
        self.json(Method::POST, "/api/v1/gc", Some(body), "gc result")
            .await
    }

    pub async fn metrics(&self) -> Result<String, ApiError> {
        let resp = self.send(Method::GET, "/metrics", None).await?;
        let target = self.describe();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|source| ApiError::Http { target, source })?
            .to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Copy a node's output from `offset` into `out` as it arrives; with
    /// `follow`, until the node is final (`aiopsctl logs -f`). Returns the
    /// bytes written.
    pub async fn output<W: AsyncWrite + Unpin>(
        &self,
        run: &str,
        node: &str,
        stream: Stream,
        offset: u64,
        follow: bool,
        out: &mut W,
    ) -> Result<u64, ApiError> {
        let path = format!(
            "/api/v1/runs/{}/nodes/{}/output?stream={}&offset={offset}&follow={}",
            percent_encode(run),
            percent_encode(node),
            stream.as_str(),
            u8::from(follow)
        );
        let mut body = self.send(Method::GET, &path, None).await?.into_body();
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| ApiError::Http {
                target: self.describe(),
                source,
            })?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data)
                    .await
                    .map_err(|source| ApiError::Write { source })?;
                out.flush()
                    .await
                    .map_err(|source| ApiError::Write { source })?;
                written += data.len() as u64;
            }
        }
        Ok(written)
    }

    /// The event stream: stored events after `after` (none if `None`),
    /// then live ones; `run` keeps one run's events only.
    pub async fn events(
        &self,
        after: Option<i64>,
        run: Option<&str>,
    ) -> Result<EventStream, ApiError> {
        let mut path = "/api/v1/events".to_string();
        let mut sep = '?';
        if let Some(a) = after {
            path.push_str(&format!("{sep}after={a}"));
            sep = '&';
        }
        if let Some(r) = run {
            path.push_str(&format!("{sep}run={}", percent_encode(r)));
        }
        let resp = self.send(Method::GET, &path, None).await?;
        Ok(EventStream {
            body: resp.into_body(),
            buf: Vec::new(),
            target: self.describe(),
        })
    }
}

async fn handshake<S>(
    io: S,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(target: "aiops::api", error = %e, "client connection ended with an error");
        }
    });
    Ok(sender)
}

/// Turn a non-2xx answer into an error carrying the server's message.
async fn server_error(resp: Response<Incoming>, target: &str) -> ApiError {
    let status = resp.status().as_u16();
    let limited = http_body_util::Limited::new(resp.into_body(), MAX_ERROR_BODY);
    let message = match limited.collect().await {
        Ok(c) => {
            let bytes = c.to_bytes();
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string())
        }
        Err(e) => format!("(unreadable error body from {target}: {e})"),
    };
    ApiError::Server { status, message }
}

/// Server-sent events, decoded into [`Event`]s.
pub struct EventStream {
    body: Incoming,
    buf: Vec<u8>,
    target: String,
}

impl EventStream {
    /// The next event; `Ok(None)` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, ApiError> {
        loop {
            if let Some(end) = find_blank_line(&self.buf) {
                let block: Vec<u8> = self.buf.drain(..end.1).take(end.0).collect();
                if let Some(ev) = parse_block(&block)? {
                    return Ok(Some(ev));
                }
                continue;
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(source)) => {
                    return Err(ApiError::Http {
                        target: self.target.clone(),
                        source,
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// `(end of the block, end of its terminating blank line)`.
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    buf.windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2))
}

/// One SSE block: comments and unknown fields are skipped; a block with
/// no `data:` is not an event.
fn parse_block(block: &[u8]) -> Result<Option<Event>, ApiError> {
    let text = std::str::from_utf8(block).map_err(|_| ApiError::EventStream {
        reason: "not UTF-8".into(),
    })?;
    let mut data = String::new();
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    if data.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&data)
        .map(Some)
        .map_err(|source| ApiError::Decode {
            what: "event",
            source,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_an_sse_block_and_skips_comments() {
        assert!(parse_block(b": keep-alive").unwrap().is_none());
        let block = br#"id: 7
event: node_state
data: {"seq":7,"time":1,"run":"r","node":null,"kind":"node_state","detail":{}}"#;
        let ev = parse_block(block).unwrap().unwrap();
        assert_eq!((ev.seq, ev.kind.as_str()), (7, "node_state"));
        assert_eq!(find_blank_line(b"a\n\nb"), Some((1, 3)));
    }
}
