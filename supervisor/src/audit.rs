//! The audit log: one JSON line per node at its end, per refusal, per gate
//! decision and per cancellation, in daily files `audit-YYYY-MM-DD.jsonl`
//! (UTC) under `<state_dir>/audit`.
//!
//! Files are opened O_APPEND, created 0600 and never truncated past what
//! was synced: a line that reached fsync is never rewritten. A write that
//! fails part-way (a full disk) is cut back to the last whole line, and the
//! line is kept in memory and retried before the next one, so it is late,
//! never lost, while the process lives; `write_errors` counts such failures
//! for /metrics.
use crate::error::SupervisorError;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What one audit line says. Capabilities are names, paths and numbers:
/// never env values or secret values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditRecord {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// `node_end`, `refusal`, `gate`, `cancel`.
    pub kind: String,
    pub run: Option<String>,
    pub flow: Option<String>,
    pub node: Option<String>,
    /// Final node state or the gate decision (`awaiting_confirmation`, `confirmed`, `pre_approved`).
    pub state: Option<String>,
    pub reason: Option<String>,
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    pub profile: Option<String>,
    pub capabilities: Option<serde_json::Value>,
    pub layers: Vec<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub duration_ms: Option<u64>,
    /// `timeout`, `output_cap`: which limits stopped the node.
    pub limit_hits: Vec<String>,
    pub attempt: Option<u32>,
    pub findings: Vec<String>,
    pub pre_approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<serde_json::Value>,
    /// What the jail refused, by layer (`crate::denials::Denials`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denials: Option<serde_json::Value>,
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn day_of(t: SystemTime) -> String {
    // "YYYY-MM-DDTHH:..." → "YYYY-MM-DD"
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(..10).unwrap_or("0000-00-00").to_string()
}

pub struct AuditLog {
    dir: PathBuf,
    open: Option<(String, File)>,
    pending: Vec<String>,
    pub write_errors: u64,
    pub lines_written: u64,
}

impl AuditLog {
    pub fn open(dir: &Path) -> Result<AuditLog, SupervisorError> {
        crate::store::private_dir(dir)?;
        Ok(AuditLog {
            dir: dir.to_path_buf(),
            open: None,
            pending: vec![],
            write_errors: 0,
            lines_written: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file_for(&mut self, day: &str) -> Result<&mut File, SupervisorError> {
        if self.open.as_ref().is_none_or(|(d, _)| d != day) {
            let path = self.dir.join(format!("audit-{day}.jsonl"));
            let f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|source| SupervisorError::Audit { path, source })?;
            self.open = Some((day.to_string(), f));
        }
        let dir = &self.dir;
        self.open
            .as_mut()
            .map(|(_, f)| f)
            .ok_or_else(|| SupervisorError::Audit {
                path: dir.clone(),
                source: std::io::Error::other("audit file not open"),
            })
    }

    /// Append `rec` (its `time` is set now) and fsync. On failure the line is
    /// kept and retried with the next append.
    pub fn append(&mut self, rec: AuditRecord) -> Result<(), SupervisorError> {
        self.append_all(vec![rec])
    }

    /// Append several records with one fsync (group commit).
    pub fn append_all(&mut self, recs: Vec<AuditRecord>) -> Result<(), SupervisorError> {
        let now = SystemTime::now();
        for mut rec in recs {
            if rec.time.is_empty() {
                rec.time = rfc3339(now);
            }
            let line = serde_json::to_string(&rec).map_err(|source| SupervisorError::Json {
                what: "audit record",
                source,
            })?;
            self.pending.push(line);
        }
        let day = day_of(now);
        let dir = self.dir.clone();
        let lines = std::mem::take(&mut self.pending);
        let result = (|| {
            let f = self.file_for(&day)?;
            let mut buf = String::new();
            for l in &lines {
                buf.push_str(l);
                buf.push('\n');
            }
            let path = dir.join(format!("audit-{day}.jsonl"));
            let err = |source| SupervisorError::Audit {
                path: path.clone(),
                source,
            };
            let len = f.metadata().map_err(err)?.len();
            if let Err(e) = f.write_all(buf.as_bytes()).and_then(|()| f.sync_data()) {
                // Never leave half a line: cut back to the last whole one.
                let _ = f.set_len(len);
                return Err(err(e));
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.lines_written += lines.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.write_errors += 1;
                self.open = None;
                self.pending = lines;
                Err(e)
            }
        }
    }

    /// Lines still waiting for a successful write.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

enum Msg {
    Line(Box<AuditRecord>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// A writer thread in front of an `AuditLog`: callers hand over a record
/// (stamped with the time of the event) and go on; the thread writes
/// whatever has queued up with one fsync, so the scheduler never waits on
/// the disk. `flush` waits until everything handed over is on disk.
pub struct AuditSink {
    tx: std::sync::Mutex<std::sync::mpsc::Sender<Msg>>,
    log: std::sync::Arc<std::sync::Mutex<AuditLog>>,
}

/// Which line settled a node's owed line: run, node, the final state it
/// records, and the attempt (None for refusals, which never ran).
pub type Settled = (String, String, String, Option<u32>);

/// Told which final-state lines have just been fsync'd.
pub type OnSynced = Box<dyn Fn(&[Settled]) + Send>;

/// The key of a line that records a node's final state. Matching on state
/// and attempt keeps an older line (a failed attempt before a retry, a
/// cancel sent while the node still ran) from settling a newer one.
pub(crate) fn settles(rec: &AuditRecord) -> Option<Settled> {
    let state = rec.state.as_deref()?;
    let is_final = crate::model::NodeState::parse(state).is_some_and(|s| s.is_final());
    match (&rec.run, &rec.node) {
        (Some(r), Some(n)) if is_final => {
            Some((r.clone(), n.clone(), state.to_string(), rec.attempt))
        }
        _ => None,
    }
}

fn lock_log(m: &std::sync::Mutex<AuditLog>) -> std::sync::MutexGuard<'_, AuditLog> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long the writer waits for more lines before it syncs a batch: one
/// fdatasync per node end was the writer's whole cost when many short
/// nodes end close together. A line is still durable long before anyone
/// reads it, and a crash inside the window is covered: the store keeps
/// such nodes unaudited and their lines are written again at restart.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);
const MAX_BATCH: usize = 256;
/// How often lines kept after a failed write are tried again.
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// `first` and whatever follows within `LINGER`; a flush request (someone
/// is waiting) ends the wait at once.
fn gather(first: Msg, rx: &std::sync::mpsc::Receiver<Msg>) -> Vec<Msg> {
    let deadline = std::time::Instant::now() + LINGER;
    let mut msgs = vec![first];
    loop {
        msgs.extend(rx.try_iter());
        if msgs.len() >= MAX_BATCH || msgs.iter().any(|m| matches!(m, Msg::Flush(_))) {
            return msgs;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(m) => msgs.push(m),
            Err(_) => return msgs, // the window closed, or every sender is gone
        }
    }
}

impl AuditSink {
    pub fn start(log: AuditLog, on_synced: OnSynced) -> AuditSink {
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let log = std::sync::Arc::new(std::sync::Mutex::new(log));
        let shared = log.clone();
        // Detached: it ends when every sender is gone.
        let _ = std::thread::Builder::new()
            .name("aiops-audit".into())
            .spawn(move || {
                // Keys of lines handed over but not yet known to be on disk
                // (a failed batch's stay here until a write succeeds).
                let mut owed: Vec<Settled> = vec![];
                let mut failing = 0u64;
                loop {
                    // Lines kept after a failed write are retried every
                    // RETRY_EVERY even when nothing new arrives (the disk
                    // may have been freed).
                    let first = if lock_log(&shared).pending() > 0 {
                        match rx.recv_timeout(RETRY_EVERY) {
                            Ok(m) => Some(m),
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                        }
                    } else {
                        match rx.recv() {
                            Ok(m) => Some(m),
                            Err(_) => break,
                        }
                    };
                    let mut batch = vec![];
                    let mut waiters = vec![];
                    for m in first.map(|f| gather(f, &rx)).unwrap_or_default() {
                        match m {
                            Msg::Line(r) => batch.push(*r),
                            Msg::Flush(w) => waiters.push(w),
                        }
                    }
                    owed.extend(batch.iter().filter_map(settles));
                    let mut log = lock_log(&shared);
                    let result = if batch.is_empty() && log.pending() > 0 {
                        log.append_all(vec![])
                    } else if batch.is_empty() {
                        Ok(())
                    } else {
                        log.append_all(batch)
                    };
                    let synced = result.is_ok() && log.pending() == 0;
                    drop(log);
                    match result {
                        // Once per streak of failures, not at every retry.
                        Err(e) if failing == 0 => {
                            failing += 1;
                            tracing::error!(error = %crate::error::error_chain(&e), "audit write failed; the lines are kept and retried");
                        }
                        Err(_) => failing += 1,
                        Ok(()) if synced && !owed.is_empty() => {
                            on_synced(&owed);
                            owed.clear();
                        }
                        Ok(()) => {}
                    }
                    if synced && failing > 0 {
                        tracing::warn!(attempts = failing, "audit lines kept after failed writes are now on disk");
                        failing = 0;
                    }
                    for w in waiters {
                        let _ = w.send(());
                    }
                }
            });
        AuditSink {
            tx: std::sync::Mutex::new(tx),
            log,
        }
    }

    pub fn send(&self, mut rec: AuditRecord) {
        rec.time = rfc3339(SystemTime::now());
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tx.send(Msg::Line(Box::new(rec.clone()))).is_err() {
            drop(tx);
            // The writer is gone: write here rather than lose the line.
            let _ = lock_log(&self.log).append(rec);
        }
    }

    /// Wait until every record sent so far has been written (or has failed
    /// and is kept for retry).
    pub fn flush(&self) {
        let (wtx, wrx) = std::sync::mpsc::channel();
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(Msg::Flush(wtx))
            .is_ok();
        if sent {
            let _ = wrx.recv_timeout(std::time::Duration::from_secs(30));
        }
    }

    /// The lines not yet on disk (kept after a failed write), as JSON.
    pub fn unwritten(&self) -> Vec<String> {
        lock_log(&self.log).pending.clone()
    }

    /// (write errors so far, lines waiting for a retry)
    pub fn health(&self) -> (u64, usize) {
        let log = lock_log(&self.log);
        (log.write_errors, log.pending())
    }
}

/// Filters for `aiopsctl audit`.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub since: Option<SystemTime>,
    pub run: Option<String>,
}

/// Read every line matching `q`, oldest first. Lines that do not parse are
/// reported as errors with file and line number, not skipped silently.
pub fn read(dir: &Path, q: &Query) -> Result<Vec<AuditRecord>, SupervisorError> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(source) => {
            return Err(SupervisorError::Audit {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    files.sort();
    let since_day = q.since.map(day_of);
    let since = q.since.map(rfc3339);
    let mut out = vec![];
    for path in files {
        let day = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.get(6..16))
            .unwrap_or("");
        if since_day.as_deref().is_some_and(|s| day < s) {
            continue;
        }
        let f = File::open(&path).map_err(|source| SupervisorError::Audit {
            path: path.clone(),
            source,
        })?;
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|source| SupervisorError::Audit {
                path: path.clone(),
                source,
            })?;
            let rec: AuditRecord =
                serde_json::from_str(&line).map_err(|e| SupervisorError::Audit {
                    path: path.clone(),
                    source: std::io::Error::other(format!("line {}: {e}", i + 1)),
                })?;
            // RFC 3339 UTC with fixed width sorts as text.
            if since.as_deref().is_some_and(|s| rec.time.as_str() < s) {
                continue;
            }
            if q.run
                .as_deref()
                .is_some_and(|r| rec.run.as_deref() != Some(r))
            {
                continue;
            }
            out.push(rec);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The fields a line carries are exactly docs/supervisor.md's table
    /// (in order), each a plain JSON value; a line of an older aiops (with
    /// `by` and a tagged `env`) still reads.
    #[test]
    fn a_line_is_plain_json_with_the_documented_fields() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/supervisor.md"
        ))
        .unwrap();
        let table = doc
            .split_once("<!-- BEGIN AUDIT FIELDS -->")
            .and_then(|(_, r)| r.split_once("<!-- END AUDIT FIELDS -->"))
            .map(|(t, _)| t)
            .unwrap();
        let documented: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`').map(|(f, _)| f))
            .collect();
        let rec = AuditRecord {
            kind: "node_end".into(),
            capabilities: Some(serde_json::json!({"env": ["HOME", "LC_*"]})),
            egress: Some(serde_json::json!({"allowed": 1})),
            denials: Some(serde_json::json!({"seccomp": []})),
            ..AuditRecord::default()
        };
        let v = serde_json::to_value(&rec).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = documented.clone();
        want.sort_unstable();
        let mut have = keys.clone();
        have.sort_unstable();
        assert_eq!(have, want, "a line's fields against docs/supervisor.md");
        let line = serde_json::to_string(&rec).unwrap();
        assert!(!line.contains("\"by\""), "{line}");
        let old = r#"{"time":"t","kind":"gate","by":null,"capabilities":{"env":{"Patterns":["HOME"]}},"pre_approved":true}"#;
        let back: AuditRecord = serde_json::from_str(old).unwrap();
        assert!(back.pre_approved && back.kind == "gate");
    }

    #[test]
    fn lines_append_private_and_read_back_filtered() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("audit");
        let mut log = AuditLog::open(&dir).unwrap();
        for (run, node) in [("r1", "a"), ("r2", "b"), ("r1", "c")] {
            log.append(AuditRecord {
                kind: "node_end".into(),
                run: Some(run.into()),
                node: Some(node.into()),
                stdout_bytes: 3,
                ..AuditRecord::default()
            })
            .unwrap();
        }
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(files.len(), 1);
        let f = files[0].as_ref().unwrap().path();
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let all = read(&dir, &Query::default()).unwrap();
        assert_eq!(all.len(), 3);
        let r1 = read(
            &dir,
            &Query {
                run: Some("r1".into()),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(
            r1.iter()
                .map(|r| r.node.clone().unwrap())
                .collect::<Vec<_>>(),
            ["a", "c"]
        );
        let future = SystemTime::now() + std::time::Duration::from_secs(3600);
        let none = read(
            &dir,
            &Query {
                since: Some(future),
                ..Query::default()
            },
        )
        .unwrap();
        assert!(none.is_empty());
        // A reopened log appends; earlier lines stay as they were.
        let before = std::fs::read_to_string(&f).unwrap();
        let mut log = AuditLog::open(&dir).unwrap();
        log.append(AuditRecord::default()).unwrap();
        let after = std::fs::read_to_string(&f).unwrap();
        assert!(after.starts_with(&before));
        assert_eq!(after.lines().count(), 4);
    }

    #[test]
    fn a_corrupt_line_is_an_error_naming_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("audit-2026-01-01.jsonl"),
            "{\"time\":\"2026-01-01T00:00:00.000Z\"}\nnot json\n",
        )
        .unwrap();
        let e = read(d.path(), &Query::default()).err().unwrap();
        let msg = crate::error::error_chain(&e);
        assert!(
            msg.contains("audit-2026-01-01.jsonl") && msg.contains("line 2"),
            "{msg}"
        );
    }

    #[test]
    fn a_full_disk_keeps_the_line_and_leaves_no_half_line() {
        // /dev/full fails every write with ENOSPC: point the day file at it.
        if !Path::new("/dev/full").exists() {
            eprintln!("skipped: no /dev/full");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(d.path()).unwrap();
        let day = day_of(SystemTime::now());
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .unwrap();
        log.open = Some((day, f));
        assert!(log
            .append(AuditRecord {
                node: Some("x".into()),
                ..AuditRecord::default()
            })
            .is_err());
        assert_eq!(log.pending(), 1);
        assert_eq!(log.write_errors, 1);
        // The next append reopens the real file and writes both lines.
        log.append(AuditRecord::default()).unwrap();
        assert_eq!(log.pending(), 0);
        let all = read(d.path(), &Query::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].node.as_deref(), Some("x"));
    }
}
