//! SQLite state: runs, nodes and events. Never secrets, never env values:
//! a node's record holds its argv, profile name, counts and layers only.
//!
//! The directory is 0700 and the database 0600 (checked on open, not just
//! set on create); WAL with `synchronous = NORMAL`, so a crash loses at most
//! the last commits, never leaves a half-written one. Every multi-row write
//! is one transaction. Migrations are numbered; `schema_version` records
//! which ran, and a database from a newer aiops is refused, not guessed at.
use crate::error::SupervisorError;
use crate::model::{Event, NodeRecord, NodeState, RunRecord, RunState};
use aiops_proto::ExitReport;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Each entry runs once, in order, in its own transaction.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        flow TEXT NOT NULL,
        flow_path TEXT NOT NULL,
        flow_json TEXT NOT NULL,
        state TEXT NOT NULL,
        pre_approved INTEGER NOT NULL,
        workspace TEXT,
        commit_sha TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE nodes (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        id TEXT NOT NULL,
        pos INTEGER NOT NULL,
        state TEXT NOT NULL,
        needs TEXT NOT NULL,
        profile TEXT NOT NULL,
        argv TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        findings TEXT NOT NULL DEFAULT '[]',
        exit_code INTEGER,
        signal INTEGER,
        stdout_bytes INTEGER NOT NULL DEFAULT 0,
        stderr_bytes INTEGER NOT NULL DEFAULT 0,
        duration_ms INTEGER,
        timed_out INTEGER NOT NULL DEFAULT 0,
        output_capped INTEGER NOT NULL DEFAULT 0,
        peak_rss_kib INTEGER,
        layers TEXT NOT NULL DEFAULT '[]',
        started_at INTEGER,
        ended_at INTEGER,
        PRIMARY KEY (run_id, id)
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        node TEXT,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX runs_by_time ON runs(created_at);",
    // 2: whether a final node's audit line is known to be on disk.
    "ALTER TABLE nodes ADD COLUMN audited INTEGER NOT NULL DEFAULT 1;",
];

pub const DB_FILE: &str = "state.db";

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// (device, inode) of `path` when it was opened: a file deleted or
    /// replaced under the engine is noticed (`identity_changed`).
    ident: Option<(u64, u64)>,
    /// The same for its `-wal`: SQLite does not remove the WAL of a
    /// database that was moved or deleted under it, and a stale WAL must
    /// never meet the file that now has its name (it would be replayed).
    wal_ident: Option<(u64, u64)>,
}

/// What became of `state.db` under an open store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    /// Gone (else another file is at its path).
    pub deleted: bool,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

fn ident_of(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Everything about a node that is known when its run is created.
#[derive(Debug, Clone)]
pub struct NewNode {
    pub id: String,
    pub needs: Vec<String>,
    pub profile: String,
    pub argv: Vec<String>,
    pub findings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub flow: String,
    pub flow_path: String,
    /// The validated flow, so queued work survives a restart.
    pub flow_json: String,
    pub pre_approved: bool,
    pub nodes: Vec<NewNode>,
}

/// A connection to the database at `path` with the store's settings.
fn connect(path: &Path) -> Result<Connection, SupervisorError> {
    let conn = Connection::open(path).map_err(db_err("open the state database"))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db_err("set busy timeout"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_err("enable WAL"))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db_err("set synchronous"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(db_err("enable foreign keys"))?;
    Ok(conn)
}

fn db_err(what: &'static str) -> impl FnOnce(rusqlite::Error) -> SupervisorError {
    move |source| SupervisorError::Store { what, source }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Create `dir` 0700 or check that an existing one is ours and not open to others.
pub fn private_dir(dir: &Path) -> Result<(), SupervisorError> {
    let io = |source| SupervisorError::StateDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let meta = std::fs::symlink_metadata(dir).map_err(io)?;
    if !meta.is_dir() {
        return Err(io(std::io::Error::other("not a directory")));
    }
    let us = nix::unistd::geteuid().as_raw();
    if meta.uid() != us {
        return Err(SupervisorError::StateDirNotOurs {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            us,
        });
    }
    // Search-only (0711) is allowed: a root engine needs it so that jails
    // running as nobody reach their workspaces; nothing can be listed.
    if meta.mode() & 0o066 != 0 {
        // Ours, so tighten rather than refuse: an older umask made it.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

impl Store {
    /// Open (or create) `<dir>/state.db`, run migrations.
    pub fn open(dir: &Path) -> Result<Store, SupervisorError> {
        private_dir(dir)?;
        let path = dir.join(DB_FILE);
        // Create it 0600 ourselves: SQLite would use the umask.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| SupervisorError::StateDir {
                path: path.clone(),
                source,
            })?;
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            if let Ok(m) = std::fs::metadata(&p) {
                if m.mode() & 0o077 != 0 {
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).map_err(
                        |source| SupervisorError::StateDir {
                            path: p.clone(),
                            source,
                        },
                    )?;
                }
            }
        }
        let conn = connect(&path)?;
        let ident = ident_of(&path);
        let mut store = Store {
            conn,
            path,
            ident,
            wal_ident: None,
        };
        store.migrate()?;
        // The WAL exists once the database was read.
        store.wal_ident = ident_of(&with_suffix(&store.path, "-wal"));
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `state.db` is no longer the file this store opened.
    pub fn identity_changed(&self) -> Option<Changed> {
        let opened = self.ident?;
        match std::fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Changed { deleted: true }),
            Err(_) => None,
            Ok(m) if (m.dev(), m.ino()) == opened => None,
            Ok(_) => Some(Changed { deleted: false }),
        }
    }

    /// `state.db` was deleted while open: write the open copy (every
    /// commit so far) back to its path and go on with that file.
    pub fn restore_at_path(&mut self) -> Result<(), SupervisorError> {
        let tmp = PathBuf::from(format!("{}.restoring", self.path.display()));
        let _ = std::fs::remove_file(&tmp);
        self.conn
            .execute("VACUUM INTO ?1", params![tmp.display().to_string()])
            .map_err(db_err("copy the open database"))?;
        let io = |source| SupervisorError::StateDir {
            path: tmp.clone(),
            source,
        };
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        // Close the deleted one first: closing checkpoints into it and
        // removes its -wal and -shm, which must not meet the new file.
        let old = std::mem::replace(
            &mut self.conn,
            Connection::open_in_memory().map_err(db_err("open a placeholder"))?,
        );
        if let Err((_, e)) = old.close() {
            tracing::warn!(error = %e, "closing the deleted state database");
        }
        self.remove_own_wal();
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        let dir = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        *self = Store::open(&dir)?;
        Ok(())
    }

    /// Another file took `state.db`'s place: copy the open database to
    /// `state.db.engine-<ms>` and go on there. Closing the old connection
    /// removes its `state.db-wal` and `-shm`, which would otherwise be
    /// replayed into the file that replaced it at its next open.
    pub fn move_aside(&mut self) -> Result<PathBuf, SupervisorError> {
        let copy = PathBuf::from(format!("{}.engine-{}", self.path.display(), now_ms()));
        self.conn
            .execute("VACUUM INTO ?1", params![copy.display().to_string()])
            .map_err(db_err("save the open database"))?;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| SupervisorError::StateDir {
                path: copy.clone(),
                source,
            },
        )?;
        let conn = connect(&copy)?;
        let old = std::mem::replace(&mut self.conn, conn);
        if let Err((_, e)) = old.close() {
            tracing::warn!(error = %e, "closing the replaced state database");
        }
        self.remove_own_wal();
        self.ident = ident_of(&copy);
        self.path = copy.clone();
        self.schema_version()?;
        self.wal_ident = ident_of(&with_suffix(&copy, "-wal"));
        Ok(copy)
    }

    /// Remove `-wal` and `-shm` at this store's path if the WAL is still
    /// the one it opened (not another database's).
    fn remove_own_wal(&self) {
        let wal = with_suffix(&self.path, "-wal");
        if self.wal_ident.is_some() && ident_of(&wal) == self.wal_ident {
            let _ = std::fs::remove_file(&wal);
            let _ = std::fs::remove_file(with_suffix(&self.path, "-shm"));
        }
    }

    /// Every run id the store knows (for `gc`'s orphans).
    pub fn run_ids(&self) -> Result<std::collections::HashSet<String>, SupervisorError> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM runs")
            .map_err(db_err("list run ids"))?;
        let rows = st
            .query_map([], |r| r.get(0))
            .map_err(db_err("list run ids"))?;
        rows.collect::<Result<_, _>>()
            .map_err(db_err("list run ids"))
    }

    fn migrate(&mut self) -> Result<(), SupervisorError> {
        self.conn
            .execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(db_err("create schema_version"))?;
        let have: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )
            .map_err(db_err("read schema_version"))?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if have > known {
            return Err(SupervisorError::SchemaTooNew {
                path: self.path.clone(),
                have,
                known,
            });
        }
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(have).unwrap_or(0))
        {
            let tx = self.conn.transaction().map_err(db_err("begin migration"))?;
            tx.execute_batch(sql).map_err(db_err("run migration"))?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![i64::try_from(i + 1).unwrap_or(i64::MAX)],
            )
            .map_err(db_err("record migration"))?;
            tx.commit().map_err(db_err("commit migration"))?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<i64, SupervisorError> {
        self.conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .map_err(db_err("read schema_version"))
    }

    /// The run and all its nodes (queued), and its event, in one transaction.
    pub fn insert_run(&mut self, run: &NewRun) -> Result<Event, SupervisorError> {
        let now = now_ms();
        let tx = self
            .conn
            .transaction()
            .map_err(db_err("begin insert run"))?;
        tx.execute(
            "INSERT INTO runs (id, flow, flow_path, flow_json, state, pre_approved, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?6)",
            params![run.id, run.flow, run.flow_path, run.flow_json, run.pre_approved, now],
        )
        .map_err(db_err("insert run"))?;
        for (pos, n) in run.nodes.iter().enumerate() {
            tx.execute(
                "INSERT INTO nodes (run_id, id, pos, state, needs, profile, argv, findings)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7)",
                params![
                    run.id,
                    n.id,
                    i64::try_from(pos).unwrap_or(i64::MAX),
                    json(&n.needs),
                    n.profile,
                    json(&n.argv),
                    json(&n.findings)
                ],
            )
            .map_err(db_err("insert node"))?;
        }
        let ev = insert_event(
            &tx,
            now,
            &run.id,
            None,
            "run_queued",
            serde_json::json!({"flow": run.flow, "nodes": run.nodes.len(), "pre_approved": run.pre_approved}),
        )?;
        tx.commit().map_err(db_err("commit insert run"))?;
        Ok(ev)
    }

    pub fn set_run_workspace(
        &mut self,
        run: &str,
        workspace: &str,
        commit: &str,
    ) -> Result<(), SupervisorError> {
        self.conn
            .execute(
                "UPDATE runs SET workspace = ?2, commit_sha = ?3, updated_at = ?4 WHERE id = ?1",
                params![run, workspace, commit, now_ms()],
            )
            .map_err(db_err("record workspace"))?;
        Ok(())
    }

    /// A run's state change and its event, together.
    pub fn set_run_state(&mut self, run: &str, state: RunState) -> Result<Event, SupervisorError> {
        let now = now_ms();
        let tx = self.conn.transaction().map_err(db_err("begin run state"))?;
        tx.execute(
            "UPDATE runs SET state = ?2, updated_at = ?3 WHERE id = ?1",
            params![run, state.as_str(), now],
        )
        .map_err(db_err("update run state"))?;
        let ev = insert_event(
            &tx,
            now,
            run,
            None,
            "run_state",
            serde_json::json!({"state": state}),
        )?;
        tx.commit().map_err(db_err("commit run state"))?;
        Ok(ev)
    }

    /// A node's state change (with its reason) and its event, together.
    /// `Running` also counts an attempt and stamps the start.
    pub fn set_node_state(
        &mut self,
        run: &str,
        node: &str,
        state: NodeState,
        reason: Option<&str>,
    ) -> Result<Event, SupervisorError> {
        let now = now_ms();
        let tx = self
            .conn
            .transaction()
            .map_err(db_err("begin node state"))?;
        let changed = if state == NodeState::Running {
            cached(
                &tx,
                "UPDATE nodes SET state = ?3, reason = ?4, attempts = attempts + 1, started_at = ?5,
                 ended_at = NULL WHERE run_id = ?1 AND id = ?2",
                params![run, node, state.as_str(), reason, now],
            )
        } else if state.is_final() {
            // Its audit line is owed until the writer says it is on disk.
            cached(
                &tx,
                "UPDATE nodes SET state = ?3, reason = ?4, ended_at = ?5, audited = 0
                 WHERE run_id = ?1 AND id = ?2",
                params![run, node, state.as_str(), reason, now],
            )
        } else {
            cached(
                &tx,
                "UPDATE nodes SET state = ?3, reason = ?4 WHERE run_id = ?1 AND id = ?2",
                params![run, node, state.as_str(), reason],
            )
        }
        .map_err(db_err("update node state"))?;
        if changed == 0 {
            return Err(SupervisorError::NoSuchNode {
                run: run.into(),
                node: node.into(),
            });
        }
        cached(
            &tx,
            "UPDATE runs SET updated_at = ?2 WHERE id = ?1",
            params![run, now],
        )
        .map_err(db_err("touch run"))?;
        let ev = insert_event(
            &tx,
            now,
            run,
            Some(node),
            "node_state",
            serde_json::json!({"state": state, "reason": reason}),
        )?;
        tx.commit().map_err(db_err("commit node state"))?;
        Ok(ev)
    }

    /// An attempt's result as agentd reported it (`None`: the jail never
    /// reported, so every count is cleared); the state change follows in
    /// `set_node_state`.
    pub fn record_outcome(
        &mut self,
        run: &str,
        node: &str,
        report: Option<&ExitReport>,
    ) -> Result<(), SupervisorError> {
        let none = ExitReport::default();
        let o = report.unwrap_or(&none);
        cached(
                &self.conn,
                "UPDATE nodes SET exit_code = ?3, signal = ?4, stdout_bytes = ?5, stderr_bytes = ?6,
                 duration_ms = ?7, timed_out = ?8, output_capped = ?9, peak_rss_kib = ?10, layers = ?11
                 WHERE run_id = ?1 AND id = ?2",
                params![
                    run,
                    node,
                    o.code,
                    o.signal,
                    i64::try_from(o.stdout_bytes).unwrap_or(i64::MAX),
                    i64::try_from(o.stderr_bytes).unwrap_or(i64::MAX),
                    i64::try_from(o.duration_ms).unwrap_or(i64::MAX),
                    o.timed_out,
                    o.output_capped,
                    report.map(|o| i64::try_from(o.peak_rss_kib).unwrap_or(i64::MAX)),
                    json(&o.layers)
                ],
            )
            .map_err(db_err("record outcome"))?;
        Ok(())
    }

    /// Nodes stored as `running`: (run, node, attempts, started_at).
    pub fn running_nodes(&self) -> Result<Vec<(String, String, u32, i64)>, SupervisorError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT run_id, id, attempts, COALESCE(started_at, 0) FROM nodes
                 WHERE state = 'running' ORDER BY run_id, pos",
            )
            .map_err(db_err("find running nodes"))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(db_err("find running nodes"))?;
        rows.collect::<Result<_, _>>()
            .map_err(db_err("find running nodes"))
    }

    /// After a restart: every node that was running is `lost` (never re-run
    /// silently), and its run too. Returns (run, node) pairs.
    pub fn mark_lost(&mut self, reason: &str) -> Result<Vec<(String, String)>, SupervisorError> {
        let now = now_ms();
        let tx = self.conn.transaction().map_err(db_err("begin recovery"))?;
        let lost: Vec<(String, String)> = {
            let mut st = tx
                .prepare(
                    "SELECT run_id, id FROM nodes WHERE state = 'running' ORDER BY run_id, pos",
                )
                .map_err(db_err("find running nodes"))?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err("find running nodes"))?;
            rows.collect::<Result<_, _>>()
                .map_err(db_err("find running nodes"))?
        };
        for (run, node) in &lost {
            cached(
                &tx,
                "UPDATE nodes SET state = 'lost', reason = ?3, ended_at = ?4, audited = 0
                 WHERE run_id = ?1 AND id = ?2",
                params![run, node, reason, now],
            )
            .map_err(db_err("mark node lost"))?;
            insert_event(
                &tx,
                now,
                run,
                Some(node),
                "node_state",
                serde_json::json!({"state": "lost", "reason": reason}),
            )?;
        }
        tx.commit().map_err(db_err("commit recovery"))?;
        Ok(lost)
    }

    /// These final-state lines are on disk: a node is settled only by the
    /// line for its current state and attempt.
    pub fn mark_audited(&mut self, keys: &[crate::audit::Settled]) -> Result<(), SupervisorError> {
        let tx = self
            .conn
            .transaction()
            .map_err(db_err("begin mark audited"))?;
        for (run, node, state, attempt) in keys {
            cached(
                &tx,
                "UPDATE nodes SET audited = 1 WHERE run_id = ?1 AND id = ?2 AND state = ?3
                 AND (?4 IS NULL OR attempts = ?4)",
                params![run, node, state, attempt],
            )
            .map_err(db_err("mark audited"))?;
        }
        tx.commit().map_err(db_err("commit mark audited"))?;
        Ok(())
    }

    /// Final nodes whose audit line may not have reached the disk (the
    /// process died between the state change and the line's fsync).
    pub fn unaudited(&self) -> Result<Vec<(RunRecord, NodeRecord)>, SupervisorError> {
        let keys: Vec<(String, String)> = {
            let mut st = self
                .conn
                .prepare("SELECT run_id, id FROM nodes WHERE audited = 0 ORDER BY run_id, pos")
                .map_err(db_err("find unaudited nodes"))?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err("find unaudited nodes"))?;
            rows.collect::<Result<_, _>>()
                .map_err(db_err("find unaudited nodes"))?
        };
        let mut out = vec![];
        for (run, node) in keys {
            if let Some(r) = self.run(&run)? {
                if let Some(n) = r.nodes.iter().find(|n| n.id == node).cloned() {
                    out.push((r, n));
                }
            }
        }
        Ok(out)
    }

    /// Runs not yet final, oldest first, with their stored flow JSON.
    pub fn unfinished_runs(&self) -> Result<Vec<(RunRecord, String)>, SupervisorError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, flow_json FROM runs WHERE state NOT IN ('succeeded','failed','cancelled','lost')
                 ORDER BY created_at, id",
            )
            .map_err(db_err("list unfinished runs"))?;
        let ids: Vec<(String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err("list unfinished runs"))?
            .collect::<Result<_, _>>()
            .map_err(db_err("list unfinished runs"))?;
        let mut out = vec![];
        for (id, flow) in ids {
            if let Some(r) = self.run(&id)? {
                out.push((r, flow));
            }
        }
        Ok(out)
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, SupervisorError> {
        let run = self
            .conn
            .query_row(
                "SELECT id, flow, flow_path, state, pre_approved, workspace, commit_sha, created_at, updated_at
                 FROM runs WHERE id = ?1",
                params![id],
                run_row,
            )
            .optional()
            .map_err(db_err("read run"))?;
        let Some(mut run) = run else { return Ok(None) };
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, state, needs, profile, argv, attempts, reason, findings, exit_code, signal,
                 stdout_bytes, stderr_bytes, duration_ms, timed_out, output_capped, peak_rss_kib, layers,
                 started_at, ended_at FROM nodes WHERE run_id = ?1 ORDER BY pos",
            )
            .map_err(db_err("read nodes"))?;
        run.nodes = st
            .query_map(params![id], node_row)
            .map_err(db_err("read nodes"))?
            .collect::<Result<_, _>>()
            .map_err(db_err("read nodes"))?;
        Ok(Some(run))
    }

    /// Newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, SupervisorError> {
        let ids: Vec<String> = {
            let mut st = self
                .conn
                .prepare("SELECT id FROM runs ORDER BY created_at DESC, id DESC LIMIT ?1")
                .map_err(db_err("list runs"))?;
            let rows = st
                .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                    r.get(0)
                })
                .map_err(db_err("list runs"))?;
            rows.collect::<Result<_, _>>()
                .map_err(db_err("list runs"))?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.run(&id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub fn count_runs(&self) -> Result<u64, SupervisorError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
            .map_err(db_err("count runs"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub fn events_since(&self, after: i64, limit: usize) -> Result<Vec<Event>, SupervisorError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, time, run_id, node, kind, detail FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(db_err("read events"))?;
        let rows = st
            .query_map(
                params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    let detail: String = r.get(5)?;
                    Ok(Event {
                        seq: r.get(0)?,
                        time: r.get(1)?,
                        run: r.get(2)?,
                        node: r.get(3)?,
                        kind: r.get(4)?,
                        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                    })
                },
            )
            .map_err(db_err("read events"))?;
        rows.collect::<Result<_, _>>()
            .map_err(db_err("read events"))
    }

    /// A free-standing event (gate decisions, cancellations).
    pub fn event(
        &mut self,
        run: &str,
        node: Option<&str>,
        kind: &str,
        detail: serde_json::Value,
    ) -> Result<Event, SupervisorError> {
        let tx = self.conn.transaction().map_err(db_err("begin event"))?;
        let ev = insert_event(&tx, now_ms(), run, node, kind, detail)?;
        tx.commit().map_err(db_err("commit event"))?;
        Ok(ev)
    }

    /// Final runs last updated before `before_ms` (for `aiopsctl gc`).
    pub fn finished_before(
        &self,
        before_ms: i64,
    ) -> Result<Vec<(String, String)>, SupervisorError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT flow, id FROM runs WHERE state IN ('succeeded','failed','cancelled','lost')
                 AND updated_at < ?1 ORDER BY created_at",
            )
            .map_err(db_err("list finished runs"))?;
        let rows = st
            .query_map(params![before_ms], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err("list finished runs"))?;
        rows.collect::<Result<_, _>>()
            .map_err(db_err("list finished runs"))
    }
}

/// A statement run once per node or more, through the connection's
/// prepared-statement cache: parsing its SQL again each time was about a
/// fifth of the store's time per node.
fn cached(
    c: &rusqlite::Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

fn insert_event(
    tx: &rusqlite::Transaction<'_>,
    time: i64,
    run: &str,
    node: Option<&str>,
    kind: &str,
    detail: serde_json::Value,
) -> Result<Event, SupervisorError> {
    cached(
        tx,
        "INSERT INTO events (time, run_id, node, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![time, run, node, kind, detail.to_string()],
    )
    .map_err(db_err("insert event"))?;
    Ok(Event {
        seq: tx.last_insert_rowid(),
        time,
        run: run.into(),
        node: node.map(Into::into),
        kind: kind.into(),
        detail,
    })
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn from_json<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

fn run_row(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let state: String = r.get(3)?;
    Ok(RunRecord {
        id: r.get(0)?,
        flow: r.get(1)?,
        flow_path: r.get(2)?,
        state: RunState::parse(&state).unwrap_or(RunState::Lost),
        pre_approved: r.get(4)?,
        workspace: r.get(5)?,
        commit: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        nodes: vec![],
    })
}

fn node_row(r: &Row<'_>) -> rusqlite::Result<NodeRecord> {
    let state: String = r.get(1)?;
    let u = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0));
    Ok(NodeRecord {
        id: r.get(0)?,
        state: NodeState::parse(&state).unwrap_or(NodeState::Lost),
        needs: from_json(&r.get::<_, String>(2)?),
        profile: r.get(3)?,
        argv: from_json(&r.get::<_, String>(4)?),
        attempts: r.get(5)?,
        reason: r.get(6)?,
        findings: from_json(&r.get::<_, String>(7)?),
        exit_code: r.get(8)?,
        signal: r.get(9)?,
        stdout_bytes: u(r.get(10)?).unwrap_or(0),
        stderr_bytes: u(r.get(11)?).unwrap_or(0),
        duration_ms: u(r.get(12)?),
        timed_out: r.get(13)?,
        output_capped: r.get(14)?,
        peak_rss_kib: u(r.get(15)?),
        layers: from_json(&r.get::<_, String>(16)?),
        started_at: r.get(17)?,
        ended_at: r.get(18)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn new_run(id: &str) -> NewRun {
        NewRun {
            id: id.into(),
            flow: "f".into(),
            flow_path: "/x/flow.toml".into(),
            flow_json: "{}".into(),
            pre_approved: false,
            nodes: vec![
                NewNode {
                    id: "a".into(),
                    needs: vec![],
                    profile: "restrictive".into(),
                    argv: vec!["true".into()],
                    findings: vec![],
                },
                NewNode {
                    id: "b".into(),
                    needs: vec!["a".into()],
                    profile: "restrictive".into(),
                    argv: vec!["rm".into(), "-rf".into(), "x".into()],
                    findings: vec!["rm -r".into()],
                },
            ],
        }
    }

    #[test]
    fn files_are_private_and_schema_is_versioned() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("state");
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.schema_version().unwrap(), 2);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
        drop(s);
        // A second open does not migrate again.
        assert_eq!(Store::open(&dir).unwrap().schema_version().unwrap(), 2);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        s.conn
            .execute("INSERT INTO schema_version (version) VALUES (99)", [])
            .unwrap();
        drop(s);
        let e = Store::open(d.path()).err().unwrap();
        assert!(e.to_string().contains("99"), "{e}");
    }

    #[test]
    fn runs_nodes_and_events_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(d.path()).unwrap();
        let ev = s.insert_run(&new_run("r1")).unwrap();
        assert_eq!(ev.kind, "run_queued");
        s.set_node_state("r1", "a", NodeState::Running, None)
            .unwrap();
        s.record_outcome(
            "r1",
            "a",
            Some(&ExitReport {
                code: Some(0),
                stdout_bytes: 12,
                layers: vec!["userns".into()],
                pty: false,
                reader_closed: Vec::new(),
                ..ExitReport::default()
            }),
        )
        .unwrap();
        s.set_node_state("r1", "a", NodeState::Succeeded, None)
            .unwrap();
        let r = s.run("r1").unwrap().unwrap();
        assert_eq!(r.nodes[0].state, NodeState::Succeeded);
        assert_eq!(r.nodes[0].attempts, 1);
        assert_eq!(r.nodes[0].stdout_bytes, 12);
        assert_eq!(r.nodes[0].layers, vec!["userns".to_string()]);
        assert_eq!(r.nodes[1].findings, vec!["rm -r".to_string()]);
        assert_eq!(r.nodes[1].needs, vec!["a".to_string()]);
        let evs = s.events_since(0, 100).unwrap();
        assert_eq!(evs.len(), 3);
        assert!(evs.windows(2).all(|w| w[0].seq < w[1].seq));
        assert!(s
            .set_node_state("r1", "nope", NodeState::Failed, None)
            .is_err());
    }

    #[test]
    fn a_final_node_owes_its_audit_line_until_that_line_settles_it() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(d.path()).unwrap();
        s.insert_run(&new_run("r1")).unwrap();
        s.set_node_state("r1", "a", NodeState::Running, None)
            .unwrap();
        s.set_node_state("r1", "a", NodeState::Failed, None)
            .unwrap();
        s.set_node_state("r1", "a", NodeState::Running, None)
            .unwrap();
        s.set_node_state("r1", "a", NodeState::Succeeded, None)
            .unwrap();
        assert_eq!(s.unaudited().unwrap().len(), 1);
        // The first attempt's line, or a line for another state, does not.
        let key = |st: &str, at: u32| ("r1".to_string(), "a".to_string(), st.to_string(), Some(at));
        s.mark_audited(&[key("failed", 1), key("succeeded", 1)])
            .unwrap();
        assert_eq!(s.unaudited().unwrap().len(), 1);
        s.mark_audited(&[key("succeeded", 2)]).unwrap();
        assert!(s.unaudited().unwrap().is_empty());
    }

    #[test]
    fn running_nodes_become_lost_and_are_not_requeued() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(d.path()).unwrap();
        s.insert_run(&new_run("r1")).unwrap();
        s.set_node_state("r1", "a", NodeState::Running, None)
            .unwrap();
        drop(s);
        let mut s = Store::open(d.path()).unwrap();
        let lost = s.mark_lost("supervisor restarted").unwrap();
        assert_eq!(lost, vec![("r1".to_string(), "a".to_string())]);
        let r = s.run("r1").unwrap().unwrap();
        assert_eq!(r.nodes[0].state, NodeState::Lost);
        assert_eq!(r.nodes[0].reason.as_deref(), Some("supervisor restarted"));
        assert_eq!(r.nodes[1].state, NodeState::Queued);
        assert_eq!(s.unfinished_runs().unwrap().len(), 1);
    }

    #[test]
    fn a_database_deleted_while_open_is_restored_with_its_history() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(d.path()).unwrap();
        s.insert_run(&new_run("r1")).unwrap();
        assert!(s.identity_changed().is_none());
        std::fs::remove_file(d.path().join(DB_FILE)).unwrap();
        assert_eq!(s.identity_changed(), Some(Changed { deleted: true }));
        s.restore_at_path().unwrap();
        assert!(s.identity_changed().is_none());
        s.insert_run(&new_run("r2")).unwrap();
        drop(s);
        let s = Store::open(d.path()).unwrap();
        assert!(s.run("r1").unwrap().is_some());
        assert!(s.run("r2").unwrap().is_some());
        let mode = std::fs::metadata(d.path().join(DB_FILE)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            !names.iter().any(|n| n.ends_with(".restoring")),
            "{names:?}"
        );
    }

    #[test]
    fn a_database_replaced_while_open_is_left_alone_and_ours_moves_aside() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(d.path()).unwrap();
        s.insert_run(&new_run("r1")).unwrap();
        let other = d.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE mine (x); INSERT INTO mine VALUES (42);")
            .unwrap();
        std::fs::rename(&other, d.path().join(DB_FILE)).unwrap();
        assert_eq!(s.identity_changed(), Some(Changed { deleted: false }));
        let copy = s.move_aside().unwrap();
        assert!(s.identity_changed().is_none());
        // Ours goes on in the copy; the other file never sees our WAL.
        s.insert_run(&new_run("r2")).unwrap();
        drop(s);
        let theirs = Connection::open(d.path().join(DB_FILE)).unwrap();
        let x: i64 = theirs
            .query_row("SELECT x FROM mine", [], |r| r.get(0))
            .unwrap();
        assert_eq!(x, 42);
        assert!(theirs
            .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get::<_, i64>(0))
            .is_err());
        let ours = Connection::open(&copy).unwrap();
        let n: i64 = ours
            .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn a_failed_insert_leaves_no_half_run() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(d.path()).unwrap();
        let mut r = new_run("r1");
        // Duplicate node ids violate the primary key mid-transaction.
        r.nodes.push(r.nodes[0].clone());
        assert!(s.insert_run(&r).is_err());
        assert!(s.run("r1").unwrap().is_none());
        assert!(s.events_since(0, 10).unwrap().is_empty());
    }
}
