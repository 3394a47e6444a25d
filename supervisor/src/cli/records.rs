//! `aiopsctl audit|gc`: what runs leave behind (audit lines, workspaces
//! and output), read and cleaned up from the state directory, no engine.
use super::print_json;
use super::runs::{api_err, daemon, load_cfg, Common};
use crate::error::{out_err, SupervisorError};
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

/// The audit lines matching `q`: through the daemon when one runs (its log
/// is its own, 0600 in system mode), else from the state directory.
pub(super) fn audit_records(
    common: &Common,
    q: crate::audit::Query,
) -> Result<Vec<crate::audit::AuditRecord>, SupervisorError> {
    let cfg = load_cfg(common)?;
    match daemon(&cfg, common)? {
        Some(d) => d.audit(q).map_err(api_err),
        None => {
            cfg.read_as_state_owner()?;
            crate::audit::read(&cfg.state_dir.join("audit"), &q)
        }
    }
}

pub fn audit(args: &AuditArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let q = crate::audit::Query {
        since: args.since.as_deref().map(parse_when).transpose()?,
        run: args.run.clone(),
    };
    let recs = audit_records(&args.common, q)?;
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
    // The daemon's workspaces are not an admin's to remove: it collects them.
    let done = if let Some(d) = daemon(&cfg, &args.common)? {
        d.gc(crate::model::GcRequest {
            older_than_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
            dry_run: args.dry_run,
        })
        .map_err(api_err)?
    } else {
        if !cfg.state_dir.join(crate::store::DB_FILE).exists() {
            if args.common.json {
                print_json(out, "gc result", &Vec::<serde_json::Value>::new())?;
            } else {
                writeln!(out, "nothing to collect in {}", cfg.state_dir.display())
                    .map_err(out_err)?;
            }
            return Ok(0);
        }
        crate::gc::collect(&cfg.state_dir, &cfg.workspace_root, before, args.dry_run)?
    };
    let failed = done.iter().filter(|d| d.result == "failed").count();
    if args.common.json {
        print_json(out, "gc result", &done)?;
    } else {
        for d in &done {
            let p = &d.workspace;
            let line = match d.result.as_str() {
                "would_remove" => format!("would remove {p}"),
                "removed" => format!("removed {p}"),
                _ => format!("could not remove {p}: {}", d.error.as_deref().unwrap_or("")),
            };
            writeln!(out, "{line}").map_err(out_err)?;
        }
        if done.is_empty() {
            writeln!(out, "nothing older than {} to collect", args.older_than).map_err(out_err)?;
        }
    }
    Ok(i32::from(failed > 0))
}
