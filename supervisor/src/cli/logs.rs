//! `aiopsctl logs`: a node's stdout or stderr, from the daemon when one
//! answers, else from the state directory's files (`--follow` until the
//! node ends).
use super::runs::{api_err, load_cfg, read_runs, Common};
use crate::config::Config;
use crate::error::{out_err, SupervisorError};
use crate::model::{ApiFailure, Stream};
use clap::Args;
use std::io::{Read, Write};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run id.
    pub run: String,
    /// The node whose output to show.
    pub node: String,
    /// Keep printing as output arrives, until the node ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Show stderr instead of stdout.
    #[arg(long)]
    pub stderr: bool,
    #[command(flatten)]
    pub common: Common,
}

pub fn logs(args: &LogsArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let stream = if args.stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    // Names come from the command line: only plain names reach the path.
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !plain(&args.run) || !plain(&args.node) {
        return Err(api_err(ApiFailure::BadRequest(
            "run and node are plain names".into(),
        )));
    }
    let run_dir = cfg.state_dir.join("runs").join(&args.run);
    let path = run_dir.join(format!("{}.{}", args.node, stream.as_str()));
    if let Some(d) = super::runs::remote(&cfg, &args.common)? {
        return match d.copy_output(&args.run, &args.node, stream, args.follow, out) {
            Ok(_) => Ok(0),
            Err(ApiFailure::NotFound(why)) => orphan_output(&run_dir, &path, &why, out),
            Err(e) => Err(api_err(e)),
        };
    }
    cfg.read_as_state_owner()?;
    match read_runs(&cfg, &args.common, Some(&args.run), 1) {
        Ok(runs) => {
            runs.first()
                .and_then(|r| r.nodes.iter().find(|n| n.id == args.node))
                .ok_or_else(|| {
                    api_err(ApiFailure::NotFound(format!(
                        "run {} has no node {:?}",
                        args.run, args.node
                    )))
                })?;
        }
        Err(e) if run_dir.is_dir() => {
            return orphan_output(&run_dir, &path, &crate::error::error_chain(&e), out);
        }
        Err(e) => return Err(e),
    }
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !args.follow => return Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Not started yet: wait for it.
            loop {
                std::thread::sleep(Duration::from_millis(200));
                if let Ok(f) = std::fs::File::open(&path) {
                    break f;
                }
                if node_final(&cfg, &args.common, &args.run, &args.node)? {
                    return Ok(0);
                }
            }
        }
        Err(source) => return Err(SupervisorError::Read { path, source }),
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|source| SupervisorError::Read {
            path: path.clone(),
            source,
        })?;
        if n > 0 {
            out.write_all(&buf[..n]).map_err(out_err)?;
            continue;
        }
        out.flush().map_err(out_err)?;
        if !args.follow || node_final(&cfg, &args.common, &args.run, &args.node)? {
            // One last read: the node may have written as it ended.
            let mut rest = vec![];
            let _ = f.read_to_end(&mut rest);
            out.write_all(&rest).map_err(out_err)?;
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The state database has no record of the run (it was deleted or
/// replaced), but its output directory is there: print the file, and say
/// on stderr where it came from, or where to look.
fn orphan_output(
    run_dir: &std::path::Path,
    path: &std::path::Path,
    why: &str,
    out: &mut dyn Write,
) -> Result<i32, SupervisorError> {
    if !run_dir.is_dir() {
        return Err(api_err(ApiFailure::NotFound(why.to_string())));
    }
    match std::fs::File::open(path) {
        Ok(mut f) => {
            eprintln!(
                "aiopsctl: the state database has no record of this run ({why}); output read from {}",
                path.display()
            );
            std::io::copy(&mut f, out).map_err(out_err)?;
            out.flush().map_err(out_err)?;
            Ok(0)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "aiopsctl: the state database has no record of this run ({why}); its output directory {} has no {}",
                run_dir.display(),
                path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            );
            Ok(0)
        }
        Err(source) => Err(SupervisorError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn node_final(cfg: &Config, c: &Common, run: &str, node: &str) -> Result<bool, SupervisorError> {
    Ok(read_runs(cfg, c, Some(run), 1)?
        .first()
        .and_then(|r| r.nodes.iter().find(|n| n.id == node))
        .is_none_or(|n| n.state.is_final()))
}
