//! HTTP-layer tests of the API server and client. `MemBackend` below is a
//! test double for the HTTP layer only: runs and events kept in memory so
//! every route, status and stream can be driven; the real engine's
//! end-to-end tests live with the engine.
#![allow(clippy::unwrap_used)]
use aiops_supervisor::api::routes::ROUTES;
use aiops_supervisor::api::{ApiConfig, ApiError, ApiServer, Client, TcpConfig};
use aiops_supervisor::model::{
    ApiFailure, Backend, Event, NodeRecord, NodeState, RunRecord, RunState, ServiceState, Stream,
    SubmitRequest,
};
use aiops_testkit::{as_nobody, curl_status, is_root, require, skip_needs_root};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

// ---- the test double -------------------------------------------------------

struct MemBackend {
    ready: AtomicBool,
    runs: Mutex<Vec<RunRecord>>,
    events: Mutex<Vec<Event>>,
    tx: broadcast::Sender<Event>,
    out_dir: PathBuf,
}

fn node(id: &str, state: NodeState) -> NodeRecord {
    NodeRecord {
        id: id.into(),
        state,
        needs: vec![],
        profile: "readonly".into(),
        argv: vec!["true".into()],
        attempts: 0,
        reason: None,
        findings: vec![],
        exit_code: None,
        signal: None,
        stdout_bytes: 0,
        stderr_bytes: 0,
        duration_ms: None,
        timed_out: false,
        output_capped: false,
        peak_rss_kib: None,
        layers: vec![],
        started_at: None,
        ended_at: None,
    }
}

impl MemBackend {
    fn new(out_dir: PathBuf) -> MemBackend {
        MemBackend {
            ready: AtomicBool::new(true),
            runs: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            tx: broadcast::channel(16).0,
            out_dir,
        }
    }

    fn emit(&self, run: &str, node: Option<&str>, kind: &str) -> i64 {
        let mut evs = self.events.lock().unwrap();
        let ev = Event {
            seq: evs.len() as i64 + 1,
            time: 0,
            run: run.into(),
            node: node.map(str::to_string),
            kind: kind.into(),
            detail: serde_json::json!({"line": "a\nb"}),
        };
        evs.push(ev.clone());
        let _ = self.tx.send(ev);
        evs.len() as i64
    }

    fn set_node(&self, run: &str, node: &str, state: NodeState) {
        let mut runs = self.runs.lock().unwrap();
        let r = runs.iter_mut().find(|r| r.id == run).unwrap();
        r.nodes.iter_mut().find(|n| n.id == node).unwrap().state = state;
    }

    fn with_run<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut RunRecord) -> Result<T, ApiFailure>,
    ) -> Result<T, ApiFailure> {
        let mut runs = self.runs.lock().unwrap();
        match runs.iter_mut().find(|r| r.id == id) {
            Some(r) => f(r),
            None => Err(ApiFailure::NotFound(format!("no run {id}"))),
        }
    }
}

impl Backend for MemBackend {
    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
    fn state(&self) -> Result<ServiceState, ApiFailure> {
        Ok(ServiceState {
            version: "test".into(),
            ready: self.ready(),
            draining: false,
            parallelism: 2,
            running_nodes: 0,
            queued_nodes: 0,
            awaiting_confirmation: 0,
            runs_total: self.runs.lock().unwrap().len() as u64,
            state_dir: "/nonexistent".into(),
        })
    }
    fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>, ApiFailure> {
        Ok(self
            .runs
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }
    fn get_run(&self, id: &str) -> Result<RunRecord, ApiFailure> {
        if id == "panic" {
            panic!("the test double panics on request");
        }
        self.with_run(id, |r| Ok(r.clone()))
    }
    fn submit(&self, req: SubmitRequest) -> Result<RunRecord, ApiFailure> {
        if req.flow.trim().is_empty() {
            return Err(ApiFailure::BadRequest("flow: empty".into()));
        }
        let id = format!("r-{}", self.runs.lock().unwrap().len() + 1);
        let run = RunRecord {
            id: id.clone(),
            flow: "demo".into(),
            flow_path: req.flow_path,
            state: RunState::Running,
            pre_approved: req.yes,
            workspace: None,
            commit: None,
            created_at: 1,
            updated_at: 1,
            nodes: vec![
                node("build", NodeState::Running),
                node("deploy", NodeState::AwaitingConfirmation),
            ],
        };
        self.runs.lock().unwrap().push(run.clone());
        self.emit(&id, None, "run_queued");
        Ok(run)
    }
    fn confirm(&self, run: &str, node: &str) -> Result<(), ApiFailure> {
        self.with_run(run, |r| {
            let n = r
                .nodes
                .iter_mut()
                .find(|n| n.id == node)
                .ok_or_else(|| ApiFailure::NotFound(format!("no node {node}")))?;
            if n.state != NodeState::AwaitingConfirmation {
                return Err(ApiFailure::Conflict(format!("node {node} is {}", n.state)));
            }
            n.state = NodeState::Running;
            Ok(())
        })?;
        self.emit(run, Some(node), "gate");
        Ok(())
    }
    fn cancel(&self, run: &str, node: Option<&str>) -> Result<(), ApiFailure> {
        self.with_run(run, |r| {
            if r.state.is_final() {
                return Err(ApiFailure::Conflict(format!("run {} is {}", r.id, r.state)));
            }
            for n in r.nodes.iter_mut() {
                if node.is_none_or(|want| want == n.id) && !n.state.is_final() {
                    n.state = NodeState::Cancelled;
                }
            }
            if node.is_none() {
                r.state = RunState::Cancelled;
            }
            Ok(())
        })?;
        self.emit(run, node, "cancel");
        Ok(())
    }
    fn output_path(&self, run: &str, node: &str, stream: Stream) -> Result<PathBuf, ApiFailure> {
        self.with_run(run, |r| {
            if r.nodes.iter().any(|n| n.id == node) {
                Ok(self
                    .out_dir
                    .join(format!("{run}.{node}.{}", stream.as_str())))
            } else {
                Err(ApiFailure::NotFound(format!("no node {node}")))
            }
        })
    }
    fn events_since(&self, after_seq: i64, limit: usize) -> Result<Vec<Event>, ApiFailure> {
        let evs = self.events.lock().unwrap();
        Ok(evs
            .iter()
            .filter(|e| e.seq > after_seq)
            .take(limit)
            .cloned()
            .collect())
    }
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
    fn metrics(&self) -> String {
        format!(
            "# TYPE aiops_runs_total counter\naiops_runs_total {}\n",
            self.runs.lock().unwrap().len()
        )
    }
}

// ---- harness ---------------------------------------------------------------

struct Harness {
    dir: tempfile::TempDir,
    sock: PathBuf,
    backend: Arc<MemBackend>,
    tcp: Option<std::net::SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ApiError>>,
}

impl Harness {
    fn client(&self) -> Client {
        Client::unix(&self.sock)
    }
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

async fn start_with(tweak: impl FnOnce(&mut ApiConfig, &Path)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run").join("api.sock");
    let mut cfg = ApiConfig::new(sock.clone());
    tweak(&mut cfg, dir.path());
    let server = ApiServer::bind(cfg).unwrap();
    let tcp = server.tcp_addr();
    let backend = Arc::new(MemBackend::new(dir.path().to_path_buf()));
    let (stop, stopped) = oneshot::channel::<()>();
    let b: Arc<dyn Backend> = backend.clone();
    let task = tokio::spawn(server.run(b, async move {
        let _ = stopped.await;
    }));
    Harness {
        dir,
        sock,
        backend,
        tcp,
        stop: Some(stop),
        task,
    }
}

async fn start() -> Harness {
    start_with(|_, _| {}).await
}

fn submit_req() -> SubmitRequest {
    SubmitRequest {
        flow: "name = \"demo\"".into(),
        flow_path: "/tmp/flow.toml".into(),
        yes: false,
    }
}

/// Write raw bytes on a fresh socket connection and read the answer until
/// the server closes (requests should say `Connection: close`).
fn raw(sock: &Path, bytes: &[u8]) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

async fn raw_async(sock: PathBuf, bytes: Vec<u8>) -> String {
    tokio::task::spawn_blocking(move || raw(&sock, &bytes))
        .await
        .unwrap()
}

fn status_of(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn server_status(e: ApiError) -> (u16, String) {
    match e {
        ApiError::Server { status, message } => (status, message),
        other => panic!("expected a server error, got {other:?}"),
    }
}

// ---- routes ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_routes_follow_readiness() {
    let h = start().await;
    let live = raw_async(
        h.sock.clone(),
        b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    )
    .await;
    assert_eq!(status_of(&live), 200, "{live}");
    h.backend.ready.store(false, Ordering::SeqCst);
    assert!(!h.client().ready().await.unwrap());
    let notready = raw_async(
        h.sock.clone(),
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    )
    .await;
    assert_eq!(status_of(&notready), 503);
    assert!(
        notready.contains(r#"{"error":"not ready","status":503}"#),
        "{notready}"
    );
    h.backend.ready.store(true, Ordering::SeqCst);
    assert!(h.client().ready().await.unwrap());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_can_be_submitted_listed_and_read() {
    let h = start().await;
    let c = h.client();
    assert_eq!(c.state().await.unwrap().runs_total, 0);
    let run = c.submit(&submit_req()).await.unwrap();
    assert_eq!(run.id, "r-1");
    assert_eq!(c.run("r-1").await.unwrap(), run);
    c.submit(&submit_req()).await.unwrap();
    let all = c.runs(None).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r-2", "r-1"]
    );
    assert_eq!(c.runs(Some(1)).await.unwrap().len(), 1);
    assert_eq!(c.state().await.unwrap().runs_total, 2);

    let body = serde_json::to_string(&submit_req()).unwrap();
    let req = format!(
        "POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = raw_async(h.sock.clone(), req.into_bytes()).await;
    assert_eq!(status_of(&resp), 201, "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("location: /api/v1/runs/r-3"),
        "{resp}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_with_matching_status() {
    let h = start().await;
    let c = h.client();
    let (st, msg) = server_status(c.run("r-404").await.unwrap_err());
    assert_eq!((st, msg.as_str()), (404, "no run r-404"));
    let (st, msg) = server_status(
        c.submit(&SubmitRequest {
            flow: " ".into(),
            ..submit_req()
        })
        .await
        .unwrap_err(),
    );
    assert_eq!((st, msg.as_str()), (400, "flow: empty"));

    let post = |body: &str| {
        format!(
            "POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let resp = raw_async(h.sock.clone(), post("{not json")).await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert!(resp.contains(r#""status":400"#), "{resp}");
    let resp = raw_async(
        h.sock.clone(),
        post(r#"{"flow":"x","flow_path":"/f","extra":1}"#),
    )
    .await;
    assert_eq!(status_of(&resp), 400, "unknown field: {resp}");
    assert!(resp.contains("unknown field"), "{resp}");

    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let resp = raw_async(h.sock.clone(), get("/api/v1/runs?limit=lots")).await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    let resp = raw_async(h.sock.clone(), get("/api/v2/nothing")).await;
    assert_eq!(status_of(&resp), 404, "{resp}");
    assert!(
        resp.contains(r#"{"error":"no such route","status":404}"#),
        "{resp}"
    );
    let resp = raw_async(h.sock.clone(), get("/api/v1/runs/%zz")).await;
    assert_eq!(status_of(&resp), 400, "{resp}");

    let resp = raw_async(
        h.sock.clone(),
        b"DELETE /api/v1/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    )
    .await;
    assert_eq!(status_of(&resp), 405, "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("allow: get, post"),
        "{resp}"
    );
    let resp = raw_async(h.sock.clone(), get("/api/v1/runs/r-1/cancel")).await;
    assert_eq!(status_of(&resp), 405, "{resp}");
    assert!(resp.to_ascii_lowercase().contains("allow: post"), "{resp}");

    // A panicking backend is a 500 and the server keeps serving.
    let (st, _) = server_status(c.run("panic").await.unwrap_err());
    assert_eq!(st, 500);
    assert!(c.state().await.is_ok());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_and_cancel_move_runs_and_refuse_conflicts() {
    let h = start().await;
    let c = h.client();
    c.submit(&submit_req()).await.unwrap();
    let run = c.confirm("r-1", "deploy").await.unwrap();
    assert_eq!(run.nodes[1].state, NodeState::Running);
    let (st, msg) = server_status(c.confirm("r-1", "deploy").await.unwrap_err());
    assert_eq!((st, msg.as_str()), (409, "node deploy is running"));
    let (st, _) = server_status(c.confirm("r-1", "nope").await.unwrap_err());
    assert_eq!(st, 404);
    let run = c.cancel("r-1", Some("build")).await.unwrap();
    assert_eq!(run.nodes[0].state, NodeState::Cancelled);
    assert_eq!(run.state, RunState::Running);
    let run = c.cancel("r-1", None).await.unwrap();
    assert_eq!(run.state, RunState::Cancelled);
    let (st, _) = server_status(c.cancel("r-1", None).await.unwrap_err());
    assert_eq!(st, 409);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_include_the_backend_and_request_counters() {
    let h = start().await;
    let c = h.client();
    c.submit(&submit_req()).await.unwrap();
    let _ = c.run("r-404").await;
    let text = c.metrics().await.unwrap();
    assert!(text.contains("aiops_runs_total 1\n"), "{text}");
    assert!(
        text.contains("aiops_api_requests_total{code=\"201\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("aiops_api_requests_total{code=\"404\"} 1\n"),
        "{text}"
    );
    h.shutdown().await;
}

// ---- hostile input ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_without_being_read() {
    let h = start().await;
    // Declared 100 MB: refused on the headers alone; we never send the body.
    let resp = raw_async(
        h.sock.clone(),
        b"POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n".to_vec(),
    )
    .await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert!(resp.contains(r#""status":413"#), "{resp}");

    // Chunked, 2 MiB: cut off once past the limit.
    let sock = h.sock.clone();
    let resp = tokio::task::spawn_blocking(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..32 {
            if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_err()
                || s.write_all(&chunk).is_err()
                || s.write_all(b"\r\n").is_err()
            {
                break;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert!(resp.is_empty() || status_of(&resp) == 413, "{resp}");
    // The server is unharmed.
    assert!(h.client().state().await.is_ok());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_a_clean_4xx_or_a_close() {
    let h = start().await;
    let inputs: Vec<Vec<u8>> = vec![
        b"\x00\xff\xfe garbage\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n".to_vec(),
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200_000)).into_bytes(),
        (0..=255u8).cycle().take(100_000).collect(),
        b"POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n\xff\xfe\x00\x01\x02".to_vec(),
    ];
    for input in inputs {
        let resp = raw_async(h.sock.clone(), input).await;
        let st = status_of(&resp);
        assert!(resp.is_empty() || (400..500).contains(&st), "{resp}");
    }
    assert!(h.client().state().await.is_ok());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_and_never_stalls_others() {
    let h = start_with(|cfg, _| cfg.header_timeout = Duration::from_secs(1)).await;
    let sock = h.sock.clone();
    let slow = tokio::task::spawn_blocking(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n").unwrap();
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        (
            started.elapsed(),
            String::from_utf8_lossy(&out).into_owned(),
        )
    });
    // While the slow peer dawdles, others are served promptly.
    for _ in 0..5 {
        tokio::time::timeout(Duration::from_secs(2), h.client().state())
            .await
            .unwrap()
            .unwrap();
    }
    let (elapsed, resp) = slow.await.unwrap();
    assert!(elapsed < Duration::from_secs(5), "held for {elapsed:?}");
    assert!(resp.is_empty() || status_of(&resp) == 408, "{resp}");
    // A peer that connects and sends nothing at all is cut off too.
    let sock = h.sock.clone();
    let silent = tokio::task::spawn_blocking(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        started.elapsed()
    });
    let elapsed = silent.await.unwrap();
    assert!(
        elapsed < Duration::from_secs(5),
        "silent peer held for {elapsed:?}"
    );
    h.shutdown().await;
}

// ---- streams ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_served_from_an_offset_and_followed_to_the_end() {
    let h = start().await;
    let c = h.client();
    c.submit(&submit_req()).await.unwrap();
    let out_file = h.dir.path().join("r-1.build.stdout");
    std::fs::write(&out_file, b"hello world\n").unwrap();
    std::fs::write(h.dir.path().join("r-1.build.stderr"), b"oops\n").unwrap();

    let mut buf = Vec::new();
    let n = c
        .output("r-1", "build", Stream::Stdout, 6, false, &mut buf)
        .await
        .unwrap();
    assert_eq!((n, buf.as_slice()), (6, &b"world\n"[..]));
    let mut buf = Vec::new();
    c.output("r-1", "build", Stream::Stderr, 0, false, &mut buf)
        .await
        .unwrap();
    assert_eq!(buf, b"oops\n");
    let mut buf = Vec::new();
    c.output("r-1", "deploy", Stream::Stdout, 0, false, &mut buf)
        .await
        .unwrap();
    assert!(buf.is_empty(), "no file yet means no output yet");
    let (st, _) = server_status(
        c.output("r-1", "nope", Stream::Stdout, 0, false, &mut buf)
            .await
            .unwrap_err(),
    );
    assert_eq!(st, 404);
    let resp = raw_async(
        h.sock.clone(),
        b"GET /api/v1/runs/r-1/nodes/build/output?stream=stdin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    )
    .await;
    assert_eq!(status_of(&resp), 400, "{resp}");

    // Follow: more output arrives, then the node ends; all of it is seen.
    let follower = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            c.output("r-1", "build", Stream::Stdout, 0, true, &mut buf)
                .await
                .unwrap();
            buf
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !follower.is_finished(),
        "a running node's output is followed"
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&out_file)
        .unwrap()
        .write_all(b"more\n")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&out_file)
        .unwrap()
        .write_all(b"last\n")
        .unwrap();
    h.backend.set_node("r-1", "build", NodeState::Succeeded);
    let got = tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"hello world\nmore\nlast\n");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_replay_from_the_store_then_arrive_live() {
    let h = start().await;
    let c = h.client();
    c.submit(&submit_req()).await.unwrap(); // seq 1
    h.backend.emit("r-1", Some("build"), "node_state"); // seq 2
    h.backend.emit("r-9", None, "run_queued"); // seq 3, another run

    let mut all = c.events(Some(0), None).await.unwrap();
    let mut one_run = c.events(Some(1), Some("r-1")).await.unwrap();
    let mut live_only = c.events(None, None).await.unwrap();
    async fn next(s: &mut aiops_supervisor::api::client::EventStream) -> Event {
        tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }
    let seqs = |evs: &[Event]| evs.iter().map(|e| e.seq).collect::<Vec<_>>();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(all.next().await.unwrap().unwrap());
    }
    assert_eq!(seqs(&got), [1, 2, 3]);
    assert_eq!(got[1].detail, serde_json::json!({"line": "a\nb"}));
    let first = one_run.next().await.unwrap().unwrap();
    assert_eq!((first.seq, first.kind.as_str()), (2, "node_state"));

    h.backend.emit("r-1", Some("deploy"), "gate"); // seq 4, live
    assert_eq!(next(&mut all).await.seq, 4);
    assert_eq!(next(&mut one_run).await.seq, 4);
    assert_eq!(next(&mut live_only).await.seq, 4);

    // Last-Event-ID resumes after the given id, with SSE framing.
    let resp = tokio::task::spawn_blocking({
        let sock = h.sock.clone();
        move || {
            let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 3\r\n\r\n")
                .unwrap();
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&out).contains("\n\n{")
                && !String::from_utf8_lossy(&out).contains("id: 4\n")
            {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "stream ended early");
                out.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&out).into_owned()
        }
    })
    .await
    .unwrap();
    assert!(
        resp.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{resp}"
    );
    assert!(
        resp.contains("id: 4\nevent: gate\ndata: {\"seq\":4,"),
        "{resp}"
    );
    assert!(!resp.contains("id: 3\n"), "{resp}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscriber_rereads_the_store() {
    let h = start().await;
    let c = h.client();
    c.submit(&submit_req()).await.unwrap(); // seq 1
    let mut s = c.events(Some(0), None).await.unwrap();
    assert_eq!(s.next().await.unwrap().unwrap().seq, 1);
    // More events than the broadcast channel holds (16) while the client
    // reads nothing: the server's receiver lags and must fill in from the store.
    for _ in 0..200 {
        h.backend.emit("r-1", None, "node_state");
    }
    for want in 2..=201 {
        let ev = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(ev.seq, want);
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams_and_removes_the_socket() {
    let h = start().await;
    let c = h.client();
    let mut s = c.events(None, None).await.unwrap();
    let sock = h.sock.clone();
    h.shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    assert!(!sock.exists());
    let e = Client::connect_unix(&sock).await.unwrap_err();
    assert!(matches!(e, ApiError::NoDaemon { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("no aiops daemon reachable at "),
        "{e}"
    );
}

// ---- binding and the socket ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_0660_in_a_0700_directory_we_create() {
    let h = start().await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&h.sock), 0o660);
    assert_eq!(mode(h.sock.parent().unwrap()), 0o700);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap()); // dead daemon's leftover
    let server = ApiServer::bind(ApiConfig::new(sock.clone())).unwrap();
    let again = ApiServer::bind(ApiConfig::new(sock.clone()));
    match again {
        Err(e @ ApiError::SocketInUse { .. }) => {
            assert_eq!(
                e.to_string(),
                format!("another daemon is already listening on {}", sock.display())
            )
        }
        Err(other) => panic!("expected SocketInUse, got {other:?}"),
        Ok(_) => panic!("bound twice"),
    }
    drop(server);
    let file = dir.path().join("plain");
    std::fs::write(&file, "keep me").unwrap();
    assert!(matches!(
        ApiServer::bind(ApiConfig::new(file.clone())),
        Err(ApiError::NotASocket { .. })
    ));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

fn token_file(dir: &Path, mode: u32) -> PathBuf {
    let p = dir.join(format!("token-{mode:o}"));
    std::fs::write(&p, "s3cr3t-token-0123456789\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn tcp_binds_only_to_loopback_unless_allowed_and_needs_a_private_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |addr: &str, token: PathBuf, allow: bool| {
        let mut c = ApiConfig::new(dir.path().join(format!("s{}.sock", rand_suffix())));
        c.tcp = Some(TcpConfig {
            addr: addr.parse().unwrap(),
            token_file: token,
            allow_non_loopback: allow,
        });
        c
    };
    let good = token_file(dir.path(), 0o600);
    match ApiServer::bind(cfg("0.0.0.0:0", good.clone(), false)) {
        Err(e @ ApiError::NonLoopback { .. }) => {
            assert!(e.to_string().contains("0.0.0.0:0"), "{e}")
        }
        other => panic!("expected NonLoopback, got {:?}", other.err()),
    }
    assert!(ApiServer::bind(cfg("0.0.0.0:0", good.clone(), true)).is_ok());
    let loose = token_file(dir.path(), 0o640);
    match ApiServer::bind(cfg("127.0.0.1:0", loose.clone(), false)) {
        Err(e @ ApiError::TokenFile { .. }) => {
            assert!(e.to_string().contains(&loose.display().to_string()), "{e}")
        }
        other => panic!("expected TokenFile, got {:?}", other.err()),
    }
    let missing = dir.path().join("missing");
    assert!(matches!(
        ApiServer::bind(cfg("127.0.0.1:0", missing, false)),
        Err(ApiError::ReadToken { .. })
    ));
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_needs_the_right_bearer_token() {
    let h = start_with(|cfg, dir| {
        cfg.tcp = Some(TcpConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            token_file: token_file(dir, 0o600),
            allow_non_loopback: false,
        })
    })
    .await;
    let addr = h.tcp.unwrap();
    let raw_tcp = |auth: Option<&'static str>| {
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let auth = auth
                .map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default();
            s.write_all(
                format!("GET /livez HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        })
    };
    let none = raw_tcp(None).await.unwrap();
    assert_eq!(status_of(&none), 401, "{none}");
    assert!(
        none.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{none}"
    );
    let wrong = raw_tcp(Some("Bearer s3cr3t-token-0123456788"))
        .await
        .unwrap();
    assert_eq!(status_of(&wrong), 401, "{wrong}");
    let right = raw_tcp(Some("Bearer s3cr3t-token-0123456789"))
        .await
        .unwrap();
    assert_eq!(status_of(&right), 200, "{right}");

    let (st, _) = server_status(Client::tcp(addr, "nope").state().await.unwrap_err());
    assert_eq!(st, 401);
    let state = Client::tcp(addr, "s3cr3t-token-0123456789")
        .state()
        .await
        .unwrap();
    assert_eq!(state.version, "test");
    h.shutdown().await;
}

// ---- peer credentials ------------------------------------------------------

/// `curl` as uid/gid 65534 (via setpriv) against the socket: the HTTP status.
fn curl_as_nobody(sock: &Path) -> Option<u16> {
    curl_status(as_nobody("curl"), sock, "http://localhost/api/v1/state")
        .trim()
        .parse()
        .ok()
}

fn peer_test_prereqs() -> Result<(), String> {
    for tool in ["setpriv", "curl"] {
        let found = std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_the_admin_group_gets_403_and_the_owner_200() {
    let test = "a_peer_outside_the_admin_group_gets_403_and_the_owner_200";
    if !is_root() {
        // CI runs every test as nobody too.
        return skip_needs_root(test, "running a client as uid 65534 needs root");
    }
    if require(test, peer_test_prereqs()).is_none() {
        return;
    }
    for (group, want) in [("aiops-admin", 403), ("nogroup", 200)] {
        let h = start_with(|cfg, dir| {
            // Let nobody reach the socket file so the peer-credential check
            // is what decides, not the file mode.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::create_dir(dir.join("run")).unwrap();
            std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
            cfg.admin_group = group.into();
        })
        .await;
        std::fs::set_permissions(&h.sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let sock = h.sock.clone();
        let got = tokio::task::spawn_blocking(move || curl_as_nobody(&sock))
            .await
            .unwrap();
        assert_eq!(got, Some(want), "uid 65534 with admin group {group}");
        // The owner (root here) is always allowed.
        assert!(h.client().state().await.is_ok());
        let metrics = h.client().metrics().await.unwrap();
        let refused = if want == 403 { 1 } else { 0 };
        assert!(
            metrics.contains(&format!("aiops_api_refused_connections_total {refused}\n")),
            "{metrics}"
        );
        h.shutdown().await;
    }
}

// ---- docs drift ------------------------------------------------------------

#[test]
fn every_route_is_in_openapi_yaml_and_nothing_else_is() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml"))
            .unwrap();
    let mut documented = Vec::new();
    let mut in_paths = false;
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("paths:") {
            in_paths = true;
            continue;
        }
        if in_paths && !line.is_empty() && !line.starts_with(' ') && !line.starts_with('#') {
            in_paths = false;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            current = Some(format!("/{}", p.trim_end().trim_end_matches(':')));
        } else if let Some(m) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')) {
            if let (Some(path), true) = (
                &current,
                ["get", "post", "put", "delete", "patch"].contains(&m),
            ) {
                documented.push((m.to_uppercase(), path.clone()));
            }
        }
    }
    let mut routes: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    documented.sort();
    assert_eq!(
        routes, documented,
        "docs/openapi.yaml and api::routes::ROUTES differ"
    );
    let api_md =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md"))
            .unwrap();
    for (m, p) in ROUTES {
        assert!(
            api_md.contains(&format!("{m} {p}")),
            "docs/api.md lacks `{m} {p}`"
        );
    }
}

/// The `required` list of a schema in docs/openapi.yaml.
fn openapi_required(text: &str, schema: &str) -> Vec<String> {
    openapi_list(text, schema, "required")
}

/// A schema's first `key: [a, b]` flow list, sorted.
fn openapi_list(text: &str, schema: &str, key: &str) -> Vec<String> {
    let start = text
        .find(&format!("\n    {schema}:\n"))
        .unwrap_or_else(|| panic!("no schema {schema}"));
    let prefix = format!("{key}: [");
    let line = text[start..]
        .lines()
        .find(|l| l.trim_start().starts_with(&prefix))
        .unwrap();
    let list = line
        .trim()
        .trim_start_matches(&prefix)
        .trim_end_matches(']');
    let mut v: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
    v.sort();
    v
}

fn keys(value: serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn openapi_schemas_name_every_field_of_the_model() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml"))
            .unwrap();
    let b = MemBackend::new(PathBuf::from("/nonexistent"));
    let run = b.submit(submit_req()).unwrap();
    let ev = b.events_since(0, 1).unwrap().remove(0);
    let sub = serde_json::to_value(submit_req()).unwrap();
    assert_eq!(
        openapi_required(&text, "RunRecord"),
        keys(serde_json::to_value(&run).unwrap())
    );
    assert_eq!(
        openapi_required(&text, "NodeRecord"),
        keys(serde_json::to_value(&run.nodes[0]).unwrap())
    );
    assert_eq!(
        openapi_required(&text, "Event"),
        keys(serde_json::to_value(&ev).unwrap())
    );
    assert_eq!(
        openapi_required(&text, "ServiceState"),
        keys(serde_json::to_value(b.state().unwrap()).unwrap())
    );
    let mut sub_keys = openapi_required(&text, "SubmitRequest");
    sub_keys.push("yes".into());
    sub_keys.sort();
    assert_eq!(sub_keys, keys(sub));
    let mut node_states: Vec<String> = aiops_supervisor::model::ALL_NODE_STATES
        .iter()
        .map(|s| s.to_string())
        .collect();
    node_states.sort();
    assert_eq!(openapi_list(&text, "NodeState", "enum"), node_states);
    let run_states = openapi_list(&text, "RunState", "enum");
    assert_eq!(run_states.len(), 7, "{run_states:?}");
    for s in &run_states {
        assert!(RunState::parse(s).is_some(), "RunState {s}");
    }
}
