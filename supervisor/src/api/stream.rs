//! The two streaming routes: a node's output (optionally followed until the
//! node is final) and the server-sent event stream. Each runs a producer
//! task feeding the response body; it stops when the client goes away or
//! the server shuts down.
use super::body::{self, Resp};
use super::handlers::{call, param};
use super::server::{stopped, Shared};
use crate::model::{ApiFailure, Event, Stream};
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, CACHE_CONTROL};
use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{broadcast, mpsc};

/// How often a follower looks for new output and for the node's end.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
const READ_CHUNK: usize = 64 * 1024;
/// A comment line this often keeps proxies and idle timeouts from closing the stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events read from the store per query when replaying.
const REPLAY_PAGE: usize = 500;

pub(crate) async fn output(
    shared: &Arc<Shared>,
    id: String,
    node: String,
    query: &[(String, String)],
) -> Result<Resp, ApiFailure> {
    let stream = match param::<String>(query, "stream")?.as_deref() {
        None | Some("stdout") => Stream::Stdout,
        Some("stderr") => Stream::Stderr,
        Some(other) => {
            return Err(ApiFailure::BadRequest(format!(
                "query parameter stream: expected stdout or stderr, got {other:?}"
            )))
        }
    };
    let offset = param::<u64>(query, "offset")?.unwrap_or(0);
    let follow = match param::<String>(query, "follow")?.as_deref() {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") | Some("") => true,
        Some(other) => {
            return Err(ApiFailure::BadRequest(format!(
                "query parameter follow: expected 0 or 1, got {other:?}"
            )))
        }
    };
    let (run, n) = (id.clone(), node.clone());
    let path = call(&shared.backend, move |b| b.output_path(&run, &n, stream)).await?;
    // Open before answering, so an unreadable file is a 500 and not a cut stream.
    let file = open_at(&path, offset).await?;
    let (tx, rx) = mpsc::channel(4);
    let shared = shared.clone();
    tokio::spawn(async move {
        let follower = Follower {
            shared,
            path,
            id,
            node,
            follow,
        };
        follower.pump(file, offset, tx).await;
    });
    Ok(body::stream("application/octet-stream", rx))
}

/// `None` when the node has written nothing yet.
async fn open_at(path: &PathBuf, offset: u64) -> Result<Option<tokio::fs::File>, ApiFailure> {
    let io = |e: std::io::Error| ApiFailure::Internal(format!("read {}: {e}", path.display()));
    match tokio::fs::File::open(path).await {
        Ok(mut f) => {
            f.seek(SeekFrom::Start(offset)).await.map_err(io)?;
            Ok(Some(f))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e)),
    }
}

struct Follower {
    shared: Arc<Shared>,
    path: PathBuf,
    id: String,
    node: String,
    follow: bool,
}

impl Follower {
    async fn pump(self, mut file: Option<tokio::fs::File>, offset: u64, tx: mpsc::Sender<Bytes>) {
        let mut stop = self.shared.stop.clone();
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            // Ask before reading: output written before the node ended is
            // then read by this pass, so nothing is lost at the end.
            let last_pass = !self.follow || self.node_is_final().await;
            if file.is_none() {
                file = open_at(&self.path, offset).await.ok().flatten();
            }
            if let Some(f) = file.as_mut() {
                loop {
                    match f.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                            if tx.send(chunk).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(target: "aiops::api", path = %self.path.display(), error = %e, "reading node output failed");
                            return;
                        }
                    }
                }
            }
            if last_pass {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(FOLLOW_POLL) => {}
                () = tx.closed() => return,
                () = stopped(&mut stop) => return,
            }
        }
    }

    /// A node that vanished or a failing store also ends the stream.
    async fn node_is_final(&self) -> bool {
        let id = self.id.clone();
        match call(&self.shared.backend, move |b| b.get_run(&id)).await {
            Ok(run) => run
                .nodes
                .iter()
                .find(|n| n.id == self.node)
                .is_none_or(|n| n.state.is_final()),
            Err(_) => true,
        }
    }
}

pub(crate) fn events(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Resp, ApiFailure> {
    let after = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiFailure::BadRequest("Last-Event-ID: not an event id".into()))?,
        ),
        None => param::<i64>(query, "after")?,
    };
    let run = param::<String>(query, "run")?;
    // Subscribe before replaying, so an event stored during the replay is
    // still delivered live.
    let rx = shared.backend.subscribe();
    let (tx, out) = mpsc::channel(64);
    let sse = Sse {
        shared: shared.clone(),
        run,
        tx,
    };
    tokio::spawn(sse.pump(after, rx));
    let mut r = body::stream("text/event-stream", out);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

struct Sse {
    shared: Arc<Shared>,
    run: Option<String>,
    tx: mpsc::Sender<Bytes>,
}

impl Sse {
    async fn pump(self, after: Option<i64>, mut rx: broadcast::Receiver<Event>) {
        let mut stop = self.shared.stop.clone();
        if self
            .send(Bytes::from_static(b": aiops events\nretry: 2000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        // The last seq sent; `None` until then when only live events were asked for.
        let mut last = after;
        if let Some(from) = after {
            match self.replay(from).await {
                Some(l) => last = Some(l),
                None => return,
            }
        }
        let mut tick = tokio::time::interval(KEEP_ALIVE);
        tick.reset();
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(ev) => {
                        if last.is_some_and(|l| ev.seq <= l) {
                            continue;
                        }
                        last = Some(ev.seq);
                        if self.send_event(&ev).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(target: "aiops::api", missed, "event subscriber lagged; re-reading the store");
                        if let Some(from) = last {
                            match self.replay(from).await {
                                Some(l) => last = Some(l),
                                None => return,
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if self.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        return;
                    }
                }
                () = self.tx.closed() => return,
                () = stopped(&mut stop) => return,
            }
        }
    }

    /// Send every stored event after `from`; the last seq seen, or `None`
    /// if the client went away or the store failed.
    async fn replay(&self, mut from: i64) -> Option<i64> {
        loop {
            let page = match call(&self.shared.backend, move |b| {
                b.events_since(from, REPLAY_PAGE)
            })
            .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(target: "aiops::api", error = ?e, "event replay failed");
                    let _ = self.send(Bytes::from_static(b": replay failed\n\n")).await;
                    return None;
                }
            };
            let full = page.len() >= REPLAY_PAGE;
            for ev in &page {
                from = from.max(ev.seq);
                self.send_event(ev).await.ok()?;
            }
            if !full {
                return Some(from);
            }
        }
    }

    async fn send_event(&self, ev: &Event) -> Result<(), ()> {
        if self.run.as_ref().is_some_and(|r| *r != ev.run) {
            return Ok(());
        }
        self.send(Bytes::from(sse_frame(ev))).await
    }

    async fn send(&self, b: Bytes) -> Result<(), ()> {
        self.tx.send(b).await.map_err(|_| ())
    }
}

/// `id:`, `event:` and one `data:` line (compact JSON has no raw newline).
pub(crate) fn sse_frame(ev: &Event) -> String {
    let kind: String = ev
        .kind
        .chars()
        .filter(|c| *c != '\n' && *c != '\r')
        .collect();
    let data = serde_json::to_string(ev).unwrap_or_else(|_| "null".into());
    format!("id: {}\nevent: {kind}\ndata: {data}\n\n", ev.seq)
}
