//! fork + exec of the node, with exec errors sent back through a CLOEXEC
//! pipe: EOF on that pipe means exec succeeded, a record means the child
//! failed at a named step, so "not found", "not executable" and "bad cwd"
//! stay distinguishable.
//!
//! The node never gets a handle on the caller's terminal: with a pty its
//! fds 0-2 are the jail's own pty slave (`tty.rs`); without one, stdin is
//! agentd's own fd 0 only if that is not a terminal, else an empty pipe
//! (end of input at once, as from /dev/null, with no dependence on the
//! jail's /dev), and stdout/stderr are the counted pipes.
use crate::error::AgentError;
use crate::signals::Signals;
use crate::sys;
use crate::tty::Pty;
use aiops_proto::AgentSpec;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::{self, ForkResult, Pid};
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};

/// What execvp uses when PATH is unset (glibc, confstr _CS_PATH).
const DEFAULT_PATH: &str = "/bin:/usr/bin";
/// Large node pipes halve the wake-ups of the copy loop (fcntl(2) F_SETPIPE_SZ;
/// 1 MiB is the default /proc/sys/fs/pipe-max-size).
const NODE_PIPE_BYTES: i32 = 1 << 20;

/// The node's argv, env and candidate paths, all built before fork.
pub struct Prepared {
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    /// argv[0] itself if it has a slash, else each PATH entry joined with it.
    candidates: Vec<CString>,
}

pub struct Node {
    pub pid: Pid,
    /// None with a pty: its master carries all of the node's output.
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// The node's stdio, made before fork.
enum Stdio<'a> {
    Pty(&'a Pty),
    Pipes {
        out_w: OwnedFd,
        err_w: OwnedFd,
        /// Instead of agentd's fd 0 when that is a terminal.
        empty_stdin: Option<OwnedFd>,
    },
}

/// Child-side failure record: kind byte, candidate index, errno.
const REC_LEN: usize = 9;
const KIND_CHDIR: u8 = 1;
const KIND_STDIO: u8 = 2;
const KIND_EXEC: u8 = 3;
const KIND_NOT_FOUND: u8 = 4;

fn cstring(field: &'static str, s: &str) -> Result<CString, AgentError> {
    CString::new(s).map_err(|_| AgentError::InvalidSpec {
        field,
        reason: "contains a NUL byte".into(),
    })
}

impl Prepared {
    pub fn new(spec: &AgentSpec) -> Result<Prepared, AgentError> {
        let argv = spec
            .argv
            .iter()
            .map(|a| cstring("argv", a))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(arg0) = spec.argv.first().filter(|a| !a.is_empty()) else {
            return Err(AgentError::InvalidSpec {
                field: "argv",
                reason: "empty command".into(),
            });
        };
        let mut envp = Vec::with_capacity(spec.env.len() + spec.secrets.len());
        let pairs = spec.env.iter().map(|(k, v)| (k, v.as_str()));
        let secret_pairs = spec.secrets.iter().map(|(k, v)| (k, v.0.as_str()));
        for (k, v) in pairs.chain(secret_pairs) {
            if k.is_empty() || k.contains('=') {
                return Err(AgentError::InvalidSpec {
                    field: "env",
                    reason: format!("bad variable name {k:?}"),
                });
            }
            envp.push(cstring("env", &format!("{k}={v}"))?);
        }
        let candidates = if arg0.contains('/') {
            vec![cstring("argv", arg0)?]
        } else {
            let path = spec
                .env
                .iter()
                .rev()
                .find(|(k, _)| k == "PATH")
                .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
            path.split(':')
                .map(|dir| {
                    let dir = if dir.is_empty() {
                        "."
                    } else {
                        dir.trim_end_matches('/')
                    };
                    cstring("env", &format!("{dir}/{arg0}"))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let cwd = cstring("cwd", &spec.cwd.to_string())?;
        Ok(Prepared {
            argv,
            envp,
            cwd,
            candidates,
        })
    }
}

/// Fork the node into its own process group (with a pty: its own session)
/// and exec it.
pub fn spawn(prep: &Prepared, signals: &Signals, pty: Option<&Pty>) -> Result<Node, AgentError> {
    let pipe =
        |what| unistd::pipe2(OFlag::O_CLOEXEC).map_err(|source| AgentError::Pipe { what, source });
    let (stdio, out_r, err_r) = match pty {
        Some(p) => (Stdio::Pty(p), None, None),
        None => {
            let (out_r, out_w) = pipe("stdout")?;
            let (err_r, err_w) = pipe("stderr")?;
            for fd in [&out_r, &err_r] {
                // EPERM past the per-user pipe budget: the default size still works.
                let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(NODE_PIPE_BYTES));
            }
            let empty_stdin = if unistd::isatty(sys::stdio(0)).unwrap_or(false) {
                // The write end is dropped here: the node reads EOF.
                Some(pipe("stdin")?.0)
            } else {
                None
            };
            let pipes = Stdio::Pipes {
                out_w,
                err_w,
                empty_stdin,
            };
            (pipes, Some(out_r), Some(err_r))
        }
    };
    let (status_r, status_w) = pipe("exec status")?;

    match sys::fork().map_err(|source| AgentError::Fork { source })? {
        ForkResult::Child => {
            let rec = exec_child(prep, signals, &stdio);
            // Nothing useful can be done if the parent is gone.
            let _ = unistd::write(&status_w, &rec);
            sys::exit_child(127)
        }
        ForkResult::Parent { child } => {
            if pty.is_none() {
                // Both sides set the group, so it exists before either relies
                // on it; EACCES means the child already exec'd, which is fine.
                // (With a pty the child makes its own session: a group leader
                // could not.)
                let _ = unistd::setpgid(child, child);
            }
            drop((stdio, status_w));
            let mut rec = [0u8; REC_LEN];
            let n = read_full(&status_r, &mut rec)
                .map_err(|source| AgentError::ExecStatus { source })?;
            if n == 0 {
                return Ok(Node {
                    pid: child,
                    stdout: out_r,
                    stderr: err_r,
                });
            }
            // The child exits right after writing; reap it so it is not a zombie.
            let _ = nix::sys::wait::waitpid(child, None);
            Err(decode_failure(prep, &rec[..n]))
        }
    }
}

/// In the child: returns only on failure, with the record to send.
fn exec_child(prep: &Prepared, signals: &Signals, stdio: &Stdio<'_>) -> [u8; REC_LEN] {
    if let Err(e) = unistd::chdir(prep.cwd.as_c_str()) {
        return record(KIND_CHDIR, 0, e);
    }
    let stdio = match stdio {
        Stdio::Pty(p) => p.attach_slave(),
        Stdio::Pipes {
            out_w,
            err_w,
            empty_stdin,
        } => {
            let _ = unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            empty_stdin
                .as_ref()
                .map_or(Ok(()), unistd::dup2_stdin)
                .and_then(|()| unistd::dup2_stdout(out_w.as_fd()))
                .and_then(|()| unistd::dup2_stderr(err_w.as_fd()))
        }
    }
    .and_then(|()| signals.restore_for_exec());
    if let Err(e) = stdio {
        return record(KIND_STDIO, 0, e);
    }
    let mut eacces = None;
    for (i, path) in prep.candidates.iter().enumerate() {
        let Err(e) = unistd::execve(path, &prep.argv, &prep.envp);
        match e {
            Errno::EACCES => {
                eacces.get_or_insert(i);
            }
            // Like execvp: these mean "not in this directory", try the next.
            Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG | Errno::ELOOP => {}
            e => return record(KIND_EXEC, i, e),
        }
    }
    match eacces {
        Some(i) => record(KIND_EXEC, i, Errno::EACCES),
        None if prep.candidates.len() == 1 => record(KIND_EXEC, 0, Errno::ENOENT),
        None => record(KIND_NOT_FOUND, 0, Errno::ENOENT),
    }
}

fn record(kind: u8, index: usize, errno: Errno) -> [u8; REC_LEN] {
    let mut rec = [0u8; REC_LEN];
    rec[0] = kind;
    rec[1..5].copy_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_ne_bytes());
    rec[5..9].copy_from_slice(&(errno as i32).to_ne_bytes());
    rec
}

fn decode_failure(prep: &Prepared, rec: &[u8]) -> AgentError {
    let (Ok(index), Ok(errno)) = (
        <[u8; 4]>::try_from(rec.get(1..5).unwrap_or(&[])),
        <[u8; 4]>::try_from(rec.get(5..9).unwrap_or(&[])),
    ) else {
        return AgentError::ExecStatus {
            source: Errno::EPROTO,
        };
    };
    let source = Errno::from_raw(i32::from_ne_bytes(errno));
    let index = usize::try_from(u32::from_ne_bytes(index)).unwrap_or(usize::MAX);
    let lossy = |c: &CString| c.to_string_lossy().into_owned();
    match rec[0] {
        KIND_CHDIR => AgentError::Chdir {
            path: lossy(&prep.cwd),
            source,
        },
        KIND_STDIO => AgentError::NodeStdio { source },
        KIND_EXEC => AgentError::Exec {
            path: prep.candidates.get(index).map(lossy).unwrap_or_default(),
            source,
        },
        KIND_NOT_FOUND => AgentError::NotFound {
            name: prep.argv.first().map(lossy).unwrap_or_default(),
        },
        _ => AgentError::ExecStatus {
            source: Errno::EPROTO,
        },
    }
}

/// Read until `buf` is full or EOF; returns the bytes read.
fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut n = 0;
    while n < buf.len() {
        match unistd::read(fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
