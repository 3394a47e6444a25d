//! One function per route. Backend calls may touch SQLite, so they run on
//! the blocking pool; a panicking backend becomes a 500, not a dead server.
use super::body::{self, Resp};
use super::routes::{self, NoRoute, Route};
use super::server::Shared;
use super::stream;
use crate::model::{ApiFailure, Backend, SubmitRequest};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Request, StatusCode};
use std::sync::Arc;

/// `GET /api/v1/runs` without `limit`.
const DEFAULT_LIST_LIMIT: usize = 50;
const MAX_LIST_LIMIT: usize = 1000;

pub(crate) async fn dispatch(shared: &Arc<Shared>, req: Request<Incoming>) -> Resp {
    let route = match routes::route(req.method().as_str(), req.uri().path()) {
        Ok(r) => r,
        Err(NoRoute::NotFound) => return body::error(StatusCode::NOT_FOUND, "no such route"),
        Err(NoRoute::BadPath) => {
            return body::error(
                StatusCode::BAD_REQUEST,
                "malformed percent-encoding in the path",
            )
        }
        Err(NoRoute::MethodNotAllowed(allow)) => return body::method_not_allowed(&allow),
    };
    let query = match routes::query_pairs(req.uri().query()) {
        Ok(q) => q,
        Err(e) => return body::error(StatusCode::BAD_REQUEST, &e),
    };
    let b = &shared.backend;
    let result = match route {
        Route::Livez => Ok(body::json(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
        )),
        Route::Readyz => Ok(readyz(b.as_ref())),
        Route::Metrics => metrics(shared).await,
        Route::State => call(b, |b| b.state())
            .await
            .map(|s| body::json(StatusCode::OK, &s)),
        Route::ListRuns => match param::<usize>(&query, "limit") {
            Ok(limit) => {
                let limit = limit.unwrap_or(DEFAULT_LIST_LIMIT).min(MAX_LIST_LIMIT);
                call(b, move |b| b.list_runs(limit))
                    .await
                    .map(|r| body::json(StatusCode::OK, &r))
            }
            Err(e) => Err(e),
        },
        Route::Submit => submit(b, req).await,
        Route::GetRun { id } => call(b, move |b| b.get_run(&id))
            .await
            .map(|r| body::json(StatusCode::OK, &r)),
        Route::CancelRun { id } => act(b, req, id, move |b, id| b.cancel(id, None)).await,
        Route::Confirm { id, node } => act(b, req, id, move |b, id| b.confirm(id, &node)).await,
        Route::CancelNode { id, node } => {
            act(b, req, id, move |b, id| b.cancel(id, Some(&node))).await
        }
        Route::Output { id, node } => stream::output(shared, id, node, &query).await,
        Route::Events => stream::events(shared, req.headers(), &query),
        Route::Audit => audit(b, &query).await,
        Route::Gc => gc(b, req).await,
    };
    result.unwrap_or_else(|f| failure(&f))
}

/// `GET /api/v1/audit?since_ms=N&run=ID`: the matching records, oldest first.
#[cfg(not(target_os = "linux"))]
async fn audit(_: &Arc<dyn Backend>, _: &[(String, String)]) -> Result<Resp, ApiFailure> {
    Err(ApiFailure::NotFound("no audit log on this platform".into()))
}

/// (Linux: see above.)
#[cfg(target_os = "linux")]
async fn audit(b: &Arc<dyn Backend>, query: &[(String, String)]) -> Result<Resp, ApiFailure> {
    let since = param::<u64>(query, "since_ms")?
        .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
    let run = param::<String>(query, "run")?;
    let q = crate::audit::Query { since, run };
    call(b, move |b| b.audit(q))
        .await
        .map(|r| body::json(StatusCode::OK, &r))
}

/// `POST /api/v1/gc` with a `GcRequest`: what was (or would be) removed.
async fn gc(b: &Arc<dyn Backend>, req: Request<Incoming>) -> Result<Resp, ApiFailure> {
    let bytes = match body::read_bounded(req).await {
        Ok(b) => b,
        Err(resp) => return Ok(resp),
    };
    let g: crate::model::GcRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiFailure::BadRequest(format!("request body: {e}")))?;
    call(b, move |b| b.gc(g))
        .await
        .map(|r| body::json(StatusCode::OK, &r))
}

fn readyz(b: &dyn Backend) -> Resp {
    if b.ready() {
        body::json(StatusCode::OK, &serde_json::json!({"ready": true}))
    } else {
        body::error(StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(shared: &Arc<Shared>) -> Result<Resp, ApiFailure> {
    let mut text = call(&shared.backend, |b| Ok(b.metrics())).await?;
    shared.metrics.render(&mut text);
    Ok(body::text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        text,
    ))
}

async fn submit(b: &Arc<dyn Backend>, req: Request<Incoming>) -> Result<Resp, ApiFailure> {
    let bytes = match body::read_bounded(req).await {
        Ok(b) => b,
        Err(resp) => return Ok(resp),
    };
    let sub: SubmitRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiFailure::BadRequest(format!("request body: {e}")))?;
    let run = call(b, move |b| b.submit(sub)).await?;
    let mut r = body::json(StatusCode::CREATED, &run);
    let location = format!("/api/v1/runs/{}", routes::percent_encode(&run.id));
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(LOCATION, v);
    }
    Ok(r)
}

/// confirm/cancel: ignore (but bound) the body, act, answer with the run.
async fn act<F>(
    b: &Arc<dyn Backend>,
    req: Request<Incoming>,
    id: String,
    f: F,
) -> Result<Resp, ApiFailure>
where
    F: FnOnce(&dyn Backend, &str) -> Result<(), ApiFailure> + Send + 'static,
{
    if let Err(resp) = body::read_bounded(req).await {
        return Ok(resp);
    }
    let run = call(b, move |b| {
        f(b, &id)?;
        b.get_run(&id)
    })
    .await?;
    Ok(body::json(StatusCode::OK, &run))
}

/// Run a backend call on the blocking pool.
pub(crate) async fn call<T, F>(b: &Arc<dyn Backend>, f: F) -> Result<T, ApiFailure>
where
    T: Send + 'static,
    F: FnOnce(&dyn Backend) -> Result<T, ApiFailure> + Send + 'static,
{
    let b = b.clone();
    tokio::task::spawn_blocking(move || f(b.as_ref()))
        .await
        .unwrap_or_else(|e| Err(ApiFailure::Internal(format!("backend call failed: {e}"))))
}

pub(crate) fn failure(f: &ApiFailure) -> Resp {
    let (status, msg) = match f {
        ApiFailure::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
        ApiFailure::Forbidden(m) => (StatusCode::FORBIDDEN, m),
        ApiFailure::NotFound(m) => (StatusCode::NOT_FOUND, m),
        ApiFailure::Conflict(m) => (StatusCode::CONFLICT, m),
        ApiFailure::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
        ApiFailure::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
    };
    body::error(status, msg)
}

/// A typed query parameter; the last occurrence wins.
pub(crate) fn param<T: std::str::FromStr>(
    query: &[(String, String)],
    key: &str,
) -> Result<Option<T>, ApiFailure> {
    match query.iter().rev().find(|(k, _)| k == key) {
        None => Ok(None),
        Some((_, v)) => v.parse().map(Some).map_err(|_| {
            ApiFailure::BadRequest(format!("query parameter {key}: invalid value {v:?}"))
        }),
    }
}
