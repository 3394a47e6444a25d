//! `aiopsctl audit|gc`: what runs leave behind (audit lines, workspaces
//! and output), read and cleaned up from the state directory, no engine.
use super::print_json;
use super::runs::{load_cfg, Common};
use crate::error::{error_chain, out_err, SupervisorError};
use crate::store::Store;
use clap::Args;
use std::io::Write;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only lines newer than this: a duration (`1h`, `2d`) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only this run's lines.
    #[arg(long)]
    pub run: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Remove workspaces and output of runs that ended longer ago than this.
    #[arg(long, value_name = "DUR", default_value = "7d")]
    pub older_than: String,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: Common,
}

fn parse_when(s: &str) -> Result<std::time::SystemTime, SupervisorError> {
    let bad = |reason: String| SupervisorError::Usage {
        what: "--since".into(),
        reason,
    };
    let t = match humantime::parse_duration(s) {
        Ok(d) => std::time::SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| bad(format!("{s:?} reaches back before 1970")))?,
        Err(_) => humantime::parse_rfc3339_weak(s).map_err(|e| {
            bad(format!(
                "{s:?} is neither a duration (1h, 2d) nor an RFC 3339 time: {e}"
            ))
        })?,
    };
    if t < std::time::UNIX_EPOCH {
        return Err(bad(format!("{s:?} reaches back before 1970")));
    }
    Ok(t)
}

pub fn audit(args: &AuditArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let q = crate::audit::Query {
        since: args.since.as_deref().map(parse_when).transpose()?,
        run: args.run.clone(),
    };
    let recs = crate::audit::read(&cfg.state_dir.join("audit"), &q)?;
    if args.common.json {
        for r in &recs {
            let s = serde_json::to_string(r).map_err(|source| SupervisorError::Json {
                what: "audit record",
                source,
            })?;
            writeln!(out, "{s}").map_err(out_err)?;
        }
        return Ok(0);
    }
    for r in &recs {
        let mut head = format!(
            "{} {} {} {} {}",
            r.time,
            r.kind,
            r.run.as_deref().unwrap_or("-"),
            r.node.as_deref().unwrap_or("-"),
            r.state.as_deref().unwrap_or("-")
        );
        if r.kind == "node_end" {
            match (r.exit_code, r.signal) {
                (Some(c), _) => head += &format!(" · exit {c}"),
                (None, Some(s)) => head += &format!(" · signal {s}"),
                _ => {}
            }
            head += &format!(" · out {} B · err {} B", r.stdout_bytes, r.stderr_bytes);
            if let Some(d) = r.duration_ms {
                head += &format!(" · {:.1}s", d as f64 / 1000.0);
            }
            if !r.limit_hits.is_empty() {
                head += &format!(" · limits hit: {}", r.limit_hits.join(", "));
            }
        }
        writeln!(out, "{head}").map_err(out_err)?;
        if let Some(reason) = &r.reason {
            writeln!(out, "    reason: {reason}").map_err(out_err)?;
        }
        if !r.layers.is_empty() {
            writeln!(out, "    layers: {}", r.layers.join(", ")).map_err(out_err)?;
        }
    }
    Ok(0)
}

pub fn gc(args: &GcArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let age = humantime::parse_duration(&args.older_than).map_err(|e| SupervisorError::Usage {
        what: "--older-than".into(),
        reason: format!("{:?}: {e}", args.older_than),
    })?;
    let before = crate::store::now_ms() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    if !cfg.state_dir.join(crate::store::DB_FILE).exists() {
        if args.common.json {
            print_json(out, "gc result", &Vec::<serde_json::Value>::new())?;
        } else {
            writeln!(out, "nothing to collect in {}", cfg.state_dir.display()).map_err(out_err)?;
        }
        return Ok(0);
    }
    let finished: std::collections::HashSet<(String, String)> = Store::open(&cfg.state_dir)?
        .finished_before(before)?
        .into_iter()
        .collect();
    crate::sys::isolate_libgit2();
    let root = crate::workspace::WorkspaceRoot::open(&cfg.workspace_root).map_err(|e| {
        SupervisorError::StateDir {
            path: cfg.workspace_root.clone(),
            source: std::io::Error::other(error_chain(&e)),
        }
    })?;
    let doomed: Vec<_> = root
        .list()
        .map_err(|e| SupervisorError::StateDir {
            path: cfg.workspace_root.clone(),
            source: std::io::Error::other(error_chain(&e)),
        })?
        .into_iter()
        .filter(|e| finished.contains(&(e.flow.clone(), e.run.clone())))
        .collect();
    // (workspace, what happened, why it failed)
    let mut done: Vec<(String, &'static str, Option<String>)> = vec![];
    for e in &doomed {
        let path = e.path.display().to_string();
        if args.dry_run {
            done.push((path, "would_remove", None));
            continue;
        }
        match root.remove(&e.flow, &e.run) {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(cfg.state_dir.join("runs").join(&e.run));
                done.push((path, "removed", None));
            }
            Err(err) => done.push((path, "failed", Some(error_chain(&err)))),
        }
    }
    let failed = done.iter().filter(|d| d.1 == "failed").count();
    if args.common.json {
        let v: Vec<serde_json::Value> = done
            .iter()
            .map(|(p, what, why)| serde_json::json!({"workspace": p, "result": what, "error": why}))
            .collect();
        print_json(out, "gc result", &v)?;
    } else {
        for (p, what, why) in &done {
            let line = match (*what, why) {
                ("would_remove", _) => format!("would remove {p}"),
                ("removed", _) => format!("removed {p}"),
                (_, why) => format!("could not remove {p}: {}", why.as_deref().unwrap_or("")),
            };
            writeln!(out, "{line}").map_err(out_err)?;
        }
        if doomed.is_empty() {
            writeln!(out, "nothing older than {} to collect", args.older_than).map_err(out_err)?;
        }
    }
    Ok(i32::from(failed > 0))
}
