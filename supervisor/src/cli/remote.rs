//! The daemon behind the same `Backend` trait as the in-process engine, so
//! `aiopsctl` commands are written once. Each call is one HTTP request on
//! the API socket, driven by a small runtime of its own.
use crate::api::client::Client;
use crate::api::ApiError;
use crate::model::{ApiFailure, Backend, Event, RunRecord, ServiceState, Stream, SubmitRequest};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct RemoteBackend {
    client: Client,
    rt: tokio::runtime::Runtime,
}

fn failure(e: ApiError) -> ApiFailure {
    match e {
        ApiError::Server { status, message } => match status {
            400 | 413 | 415 | 422 => ApiFailure::BadRequest(message),
            401 | 403 => ApiFailure::Forbidden(message),
            404 => ApiFailure::NotFound(message),
            409 => ApiFailure::Conflict(message),
            503 => ApiFailure::Unavailable(message),
            _ => ApiFailure::Internal(format!("HTTP {status}: {message}")),
        },
        other => ApiFailure::Internal(crate::error::error_chain(&other)),
    }
}

impl RemoteBackend {
    /// A backend for the daemon at `socket`, if one accepts connections.
    pub fn connect(socket: &Path) -> Result<RemoteBackend, ApiError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ApiError::NoDaemon {
                path: socket.to_path_buf(),
                source,
            })?;
        let client = rt.block_on(Client::connect_unix(socket.to_path_buf()))?;
        Ok(RemoteBackend { client, rt })
    }

    /// Copy a node's output to `out` (following it with `follow`).
    pub fn copy_output(
        &self,
        run: &str,
        node: &str,
        stream: Stream,
        follow: bool,
        out: &mut dyn Write,
    ) -> Result<u64, ApiFailure> {
        let mut w = SyncOut(out);
        self.rt
            .block_on(self.client.output(run, node, stream, 0, follow, &mut w))
            .map_err(failure)
    }
}

/// A blocking writer seen as an AsyncWrite (stdout of a CLI process).
struct SyncOut<'a>(&'a mut dyn Write);

impl tokio::io::AsyncWrite for SyncOut<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.get_mut().0.write(buf))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.get_mut().0.flush())
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Backend for RemoteBackend {
    fn ready(&self) -> bool {
        self.rt.block_on(self.client.ready()).unwrap_or(false)
    }
    fn state(&self) -> Result<ServiceState, ApiFailure> {
        self.rt.block_on(self.client.state()).map_err(failure)
    }
    fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>, ApiFailure> {
        self.rt
            .block_on(self.client.runs(Some(limit)))
            .map_err(failure)
    }
    fn get_run(&self, id: &str) -> Result<RunRecord, ApiFailure> {
        self.rt.block_on(self.client.run(id)).map_err(failure)
    }
    fn submit(&self, req: SubmitRequest) -> Result<RunRecord, ApiFailure> {
        self.rt.block_on(self.client.submit(&req)).map_err(failure)
    }
    fn confirm(&self, run: &str, node: &str) -> Result<(), ApiFailure> {
        self.rt
            .block_on(self.client.confirm(run, node))
            .map(|_| ())
            .map_err(failure)
    }
    fn cancel(&self, run: &str, node: Option<&str>) -> Result<(), ApiFailure> {
        self.rt
            .block_on(self.client.cancel(run, node))
            .map(|_| ())
            .map_err(failure)
    }
    fn output_path(&self, _: &str, _: &str, _: Stream) -> Result<PathBuf, ApiFailure> {
        // The daemon's files may not be ours to open: read through the API.
        Err(ApiFailure::BadRequest(
            "output is read through the API (copy_output)".into(),
        ))
    }
    fn events_since(&self, after_seq: i64, limit: usize) -> Result<Vec<Event>, ApiFailure> {
        let _ = (after_seq, limit);
        Err(ApiFailure::BadRequest(
            "stored events are served by GET /api/v1/events".into(),
        ))
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        // Callers poll get_run as well; with no live feed they just poll.
        let (tx, rx) = tokio::sync::broadcast::channel(16);
        drop(tx);
        rx
    }
    fn metrics(&self) -> String {
        self.rt.block_on(self.client.metrics()).unwrap_or_default()
    }
    fn audit(&self, q: crate::audit::Query) -> Result<Vec<crate::audit::AuditRecord>, ApiFailure> {
        let since_ms = q.since.map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        });
        self.rt
            .block_on(self.client.audit(since_ms, q.run.as_deref()))
            .map_err(failure)
    }
    fn gc(&self, req: crate::model::GcRequest) -> Result<Vec<crate::model::GcEntry>, ApiFailure> {
        self.rt.block_on(self.client.gc(&req)).map_err(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_proto::exit;

    /// Each class of the daemon's answers exits with its own documented
    /// status (docs/api.md, "Errors").
    #[test]
    fn daemon_answers_map_to_their_exit_codes() {
        for (status, want) in [
            (400, exit::DATAERR),
            (413, exit::DATAERR),
            (401, exit::NOPERM),
            (403, exit::NOPERM),
            (404, exit::NOINPUT),
            (409, exit::CONFLICT),
            (503, exit::UNAVAILABLE),
            (500, exit::SOFTWARE),
            (405, exit::SOFTWARE),
        ] {
            let e = super::super::runs::api_err(failure(ApiError::Server {
                status,
                message: "m".into(),
            }));
            assert_eq!(e.exit_code(), want, "HTTP {status}: {e}");
            assert!(e.to_string().ends_with('m'), "{e}");
        }
    }
}
