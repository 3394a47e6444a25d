//! The API server: bind first (so the daemon can fail before it says
//! READY), then `run` until the shutdown future resolves. One task per
//! connection, so a stuck client never stalls another.
use super::auth::{self, Accounts, Peer};
use super::body::{self, Resp};
use super::metrics::ApiMetrics;
use super::{handlers, listen, ApiError, DEFAULT_ADMIN_GROUP};
use crate::model::Backend;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Connections served at once; further clients wait in the listen backlog.
const MAX_CONNECTIONS: usize = 256;
/// Largest request head (request line + headers) hyper buffers.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// After shutdown, how long open connections (event streams, log
/// followers) get to finish before they are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The Unix socket; its parent is created 0700 if missing.
    pub socket: PathBuf,
    /// Members of this group may use the socket besides the owner and root.
    pub admin_group: String,
    pub tcp: Option<TcpConfig>,
    /// A client must finish sending its request head within this time.
    pub header_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TcpConfig {
    pub addr: SocketAddr,
    /// Holds the bearer token; must be 0600 (or stricter) and ours.
    pub token_file: PathBuf,
    /// Listening beyond loopback exposes the API to the network; off
    /// unless the operator spells it out.
    pub allow_non_loopback: bool,
}

impl ApiConfig {
    pub fn new(socket: PathBuf) -> ApiConfig {
        ApiConfig {
            socket,
            admin_group: DEFAULT_ADMIN_GROUP.to_string(),
            tcp: None,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub backend: Arc<dyn Backend>,
    pub metrics: ApiMetrics,
    /// Flips to true at shutdown; streams end and connections close.
    pub stop: watch::Receiver<bool>,
}

/// How a connection was authenticated.
#[derive(Clone)]
enum Access {
    /// A Unix peer: `None` if allowed, else why not.
    Unix(Option<Arc<str>>),
    Tcp(Arc<[u8]>),
}

/// Bound listeners, not yet serving.
pub struct ApiServer {
    cfg: ApiConfig,
    unix: std::os::unix::net::UnixListener,
    /// (device, inode) of the socket we bound, so we never remove another's.
    unix_id: Option<(u64, u64)>,
    tcp: Option<(std::net::TcpListener, SocketAddr, Arc<[u8]>)>,
}

impl ApiServer {
    /// Bind the socket (and the TCP listener, after checking its address
    /// and token file). Every failure is returned, naming what failed.
    pub fn bind(cfg: ApiConfig) -> Result<ApiServer, ApiError> {
        // Check TCP first: a bad token file should not leave a socket behind.
        let tcp = match &cfg.tcp {
            Some(t) => {
                if !t.addr.ip().is_loopback() && !t.allow_non_loopback {
                    return Err(ApiError::NonLoopback { addr: t.addr });
                }
                let token: Arc<[u8]> = auth::load_token(&t.token_file)?.into();
                Some((
                    listen::bind_tcp(t.addr, t.allow_non_loopback)?,
                    t.addr,
                    token,
                ))
            }
            None => None,
        };
        let unix = listen::bind_unix(&cfg.socket)?;
        let unix_id = file_id(&cfg.socket);
        Ok(ApiServer {
            cfg,
            unix,
            unix_id,
            tcp,
        })
    }

    /// The TCP listener's address (with the port chosen when asked for 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|(l, _, _)| l.local_addr().ok())
    }

    pub fn socket_path(&self) -> &std::path::Path {
        &self.cfg.socket
    }

    /// Serve until `shutdown` resolves, then let open connections finish
    /// for a grace period and remove the socket file.
    pub async fn run(
        self,
        backend: Arc<dyn Backend>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ApiError> {
        let socket = self.cfg.socket.clone();
        let unix =
            tokio::net::UnixListener::from_std(self.unix).map_err(|source| ApiError::BindUnix {
                path: socket.clone(),
                source,
            })?;
        let tcp = match self.tcp {
            Some((l, addr, token)) => {
                let l = tokio::net::TcpListener::from_std(l)
                    .map_err(|source| ApiError::BindTcp { addr, source })?;
                Some((l, token))
            }
            None => None,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            backend,
            metrics: ApiMetrics::default(),
            stop: stop_rx,
        });
        let own_uid = nix::unistd::Uid::effective().as_raw();
        let admin_group: Arc<str> = self.cfg.admin_group.as_str().into();
        let head_timeout = self.cfg.header_timeout;
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let room = conns.len() < MAX_CONNECTIONS;
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                r = unix.accept(), if room => match r {
                    Ok((stream, _)) => {
                        let shared = shared.clone();
                        let group = admin_group.clone();
                        conns.spawn(async move {
                            let access = unix_access(&stream, own_uid, group, &shared).await;
                            serve_connection(stream, shared, access, head_timeout).await;
                        });
                    }
                    Err(e) => accept_failed(e).await,
                },
                r = accept_tcp(&tcp), if room => match r {
                    Ok((stream, token)) => {
                        let shared = shared.clone();
                        conns.spawn(serve_connection(stream, shared, Access::Tcp(token), head_timeout));
                    }
                    Err(e) => accept_failed(e).await,
                },
            }
        }
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(target: "aiops::api", open = conns.len(), "cutting connections still open after the grace period");
            conns.shutdown().await;
        }
        // A successor may already have replaced our socket; leave theirs.
        if self.unix_id.is_some() && file_id(&socket) == self.unix_id {
            let _ = std::fs::remove_file(&socket);
        }
        Ok(())
    }
}

fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Resolves once shutdown has begun (the watch guard is dropped inside,
/// so callers' futures stay `Send`).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Bind and serve in one step, for callers with nothing to do in between.
pub async fn serve(
    backend: Arc<dyn Backend>,
    cfg: ApiConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ApiError> {
    ApiServer::bind(cfg)?.run(backend, shutdown).await
}

async fn accept_tcp(
    tcp: &Option<(tokio::net::TcpListener, Arc<[u8]>)>,
) -> std::io::Result<(tokio::net::TcpStream, Arc<[u8]>)> {
    match tcp {
        Some((l, token)) => l.accept().await.map(|(s, _)| (s, token.clone())),
        None => std::future::pending().await,
    }
}

/// accept(2) fails for transient reasons (EMFILE, ECONNABORTED); back off
/// briefly instead of spinning.
async fn accept_failed(e: std::io::Error) {
    warn!(target: "aiops::api", error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Decide once per connection from the peer's credentials.
async fn unix_access(
    stream: &tokio::net::UnixStream,
    own_uid: u32,
    group: Arc<str>,
    shared: &Shared,
) -> Access {
    let peer = match auth::peer_of(stream) {
        Ok(p) => p,
        Err(e) => {
            warn!(target: "aiops::api", error = %e, "refusing a connection without peer credentials");
            shared.metrics.count_refused_peer();
            return Access::Unix(Some("peer credentials unavailable".into()));
        }
    };
    if peer.uid == own_uid || peer.uid == 0 {
        return Access::Unix(None);
    }
    let g = group.clone();
    let accounts = tokio::task::spawn_blocking(move || Accounts::lookup(&g, peer.uid))
        .await
        .unwrap_or_default();
    if auth::peer_allowed(&peer, own_uid, &accounts) {
        return Access::Unix(None);
    }
    refuse(&peer, &group, shared)
}

fn refuse(peer: &Peer, group: &str, shared: &Shared) -> Access {
    warn!(target: "aiops::api", uid = peer.uid, gid = peer.gid, pid = peer.pid, "refusing unix peer: not the owner, root or in the admin group");
    shared.metrics.count_refused_peer();
    Access::Unix(Some(
        format!(
            "uid {} may not use this API (not the owner, root or a member of {group})",
            peer.uid
        )
        .into(),
    ))
}

async fn serve_connection<IO>(io: IO, shared: Arc<Shared>, access: Access, head_timeout: Duration)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut stop = shared.stop.clone();
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        let access = access.clone();
        async move { Ok::<_, Infallible>(answer(&shared, &access, req).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(target: "aiops::api", error = %e, "connection ended with an error");
            }
        }
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn answer(shared: &Arc<Shared>, access: &Access, req: Request<Incoming>) -> Resp {
    let resp = match access {
        Access::Unix(Some(why)) => body::error(StatusCode::FORBIDDEN, why),
        Access::Tcp(token) if !auth::bearer_ok(req.headers().get(AUTHORIZATION), token) => {
            let mut r = body::error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
        _ => {
            let (method, path) = (req.method().clone(), req.uri().path().to_string());
            let r = handlers::dispatch(shared, req).await;
            debug!(target: "aiops::api", %method, path, status = r.status().as_u16(), "request");
            r
        }
    };
    shared.metrics.count(resp.status().as_u16());
    resp
}
