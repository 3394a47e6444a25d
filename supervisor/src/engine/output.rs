//! A node's stdout and stderr: two pipes into the jail, drained by one
//! thread into `<out>.stdout` and `<out>.stderr`, each file created at its
//! stream's first byte. Most nodes print little or nothing, and creating a
//! file is the dearest thing the supervisor did per node (two inode
//! allocations; ~0.2 ms each on the benchmark VM's ext4). A stream that
//! stays empty has no file, which `logs` and the API read as empty.
use crate::error::SupervisorError;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

const CHUNK: usize = 64 * 1024;

/// The jail's ends of the two pipes, for `JailStdio::Files`.
pub struct JailEnds {
    pub stdout: File,
    pub stderr: File,
}

/// The draining thread. `finish` waits for both streams to end (every
/// process in the jail has exited or closed them) and says whether all
/// the bytes were stored.
pub struct Capture {
    thread: Option<JoinHandle<Vec<StoreFailure>>>,
}

/// A stream whose bytes could not all be stored (disk full, say); the
/// rest of it was drained and dropped so the node was never blocked.
#[derive(Debug)]
pub struct StoreFailure {
    pub path: PathBuf,
    pub error: io::Error,
    /// On a full disk: how many bytes of the stream the file keeps (the
    /// rest of what was written is given back to the state disk).
    pub kept: Option<u64>,
}

impl StoreFailure {
    /// The disk (or the user's quota) was full.
    pub fn disk_full(&self) -> bool {
        matches!(
            self.error.raw_os_error(),
            Some(nix::libc::ENOSPC | nix::libc::EDQUOT)
        )
    }
}

impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.disk_full() {
            let errno = if self.error.raw_os_error() == Some(nix::libc::EDQUOT) {
                "EDQUOT"
            } else {
                "ENOSPC"
            };
            write!(
                f,
                "state disk full writing output: {errno} at {}",
                self.path.display()
            )?;
            match self.kept {
                Some(0) => write!(f, " (nothing kept)")?,
                Some(kept) => write!(f, " (its first {kept} bytes kept)")?,
                None => {}
            }
            return Ok(());
        }
        write!(f, "storing {} failed: {}", self.path.display(), self.error)
    }
}

/// Bytes of a stream kept when the state disk fills up: the head of the
/// output stays readable, the rest is given back so that the node's state
/// and audit line still fit.
pub const KEEP_ON_FULL: u64 = 64 * 1024;

/// Called (once per stream, from the draining thread) when a stream's
/// bytes can no longer be stored: the runner stops the node.
pub type OnFail = Arc<dyn Fn() + Send + Sync>;

pub fn output_file(out: &Path, stream: &str) -> PathBuf {
    PathBuf::from(format!("{}.{stream}", out.display()))
}

/// Start capturing a node attempt's output under `out`. What an earlier
/// attempt stored is removed first: `logs` shows the last attempt.
pub fn capture(out: &Path, on_fail: OnFail) -> Result<(JailEnds, Capture), SupervisorError> {
    let (ends, pending) = prepare(out)?;
    Ok((ends, pending.bind(out, on_fail)?))
}

/// The pipes and their draining thread before the node is known (a spare
/// jailer holds the jail's ends, see `warm`). The thread waits for `bind`;
/// nothing is written before then, since the jailer is blocked reading
/// its request. Dropped unbound, the thread ends and closes the pipes.
pub struct Unbound {
    to_thread: std::sync::mpsc::Sender<([PathBuf; 2], OnFail)>,
    thread: JoinHandle<Vec<StoreFailure>>,
}

/// The pipes and the waiting thread; `what` names the failure.
pub fn prepare(what: &Path) -> Result<(JailEnds, Unbound), SupervisorError> {
    let (out_r, stdout) = pipe()?;
    let (err_r, stderr) = pipe()?;
    let (to_thread, paths) = std::sync::mpsc::channel::<([PathBuf; 2], OnFail)>();
    let thread = std::thread::Builder::new()
        .name("aiops-output".into())
        .stack_size(64 * 1024)
        .spawn(move || match paths.recv() {
            Ok(([out_path, err_path], on_fail)) => drain(
                vec![sink(out_r, out_path), sink(err_r, err_path)],
                &*on_fail,
            ),
            Err(_) => vec![],
        })
        .map_err(|source| SupervisorError::StateDir {
            path: what.to_path_buf(),
            source,
        })?;
    Ok((JailEnds { stdout, stderr }, Unbound { to_thread, thread }))
}

impl Unbound {
    /// Store under `out` from now on, after removing an earlier attempt's files.
    pub fn bind(self, out: &Path, on_fail: OnFail) -> Result<Capture, SupervisorError> {
        let paths = [output_file(out, "stdout"), output_file(out, "stderr")];
        for path in &paths {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(SupervisorError::StateDir {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        // The thread only ends early by panicking; `finish` reports that.
        let _ = self.to_thread.send((paths, on_fail));
        Ok(Capture {
            thread: Some(self.thread),
        })
    }
}

fn pipe() -> Result<(OwnedFd, File), SupervisorError> {
    let (r, w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|source| SupervisorError::Channel {
            what: "output pipe",
            source,
        })?;
    Ok((r, File::from(w)))
}

fn sink(pipe: OwnedFd, path: PathBuf) -> Sink {
    Sink {
        pipe: Some(pipe),
        path,
        file: None,
        failed: None,
        written: 0,
        kept: None,
    }
}

impl Capture {
    /// Wait until both streams are closed; the failures, if any.
    pub fn finish(mut self) -> Vec<StoreFailure> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(failures)) => failures,
            Some(Err(_)) => vec![StoreFailure {
                path: PathBuf::from("(output thread)"),
                error: io::Error::other("the output thread panicked"),
                kept: None,
            }],
            None => vec![],
        }
    }
}

struct Sink {
    pipe: Option<OwnedFd>,
    path: PathBuf,
    file: Option<File>,
    failed: Option<io::Error>,
    /// Bytes written to `file` so far (at least; a failed write may have
    /// stored part of its chunk).
    written: u64,
    kept: Option<u64>,
}

impl Sink {
    /// Store `bytes`; true the first time storing fails.
    fn store(&mut self, bytes: &[u8]) -> bool {
        if self.failed.is_some() {
            return false; // keep draining; the failure is reported at the end
        }
        let r = match &mut self.file {
            Some(f) => f.write_all(bytes),
            None => create(&self.path).and_then(|mut f| {
                let r = f.write_all(bytes);
                self.file = Some(f);
                r
            }),
        };
        match r {
            Ok(()) => {
                self.written += bytes.len() as u64;
                false
            }
            Err(e) => {
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOSPC | nix::libc::EDQUOT)
                ) {
                    // Give the disk back to the state (database, audit):
                    // keep the head of the output only.
                    let keep = self.written.min(KEEP_ON_FULL);
                    if let Some(f) = &self.file {
                        if f.set_len(keep).is_ok() {
                            self.kept = Some(keep);
                        }
                    }
                }
                self.failed = Some(e);
                true
            }
        }
    }
}

fn create(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

fn drain(mut sinks: Vec<Sink>, on_fail: &(dyn Fn() + Send + Sync)) -> Vec<StoreFailure> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let open: Vec<usize> = (0..sinks.len())
            .filter(|&i| sinks[i].pipe.is_some())
            .collect();
        if open.is_empty() {
            break;
        }
        let ready: Vec<usize> = {
            let mut fds: Vec<PollFd> = open
                .iter()
                .filter_map(|&i| sinks[i].pipe.as_ref())
                .map(|p| PollFd::new(p.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => {
                    // Not expected; stop here rather than spin. The jail
                    // then sees EPIPE on its output.
                    let error = io::Error::from(e);
                    return sinks
                        .into_iter()
                        .map(|s| StoreFailure {
                            path: s.path,
                            error: io::Error::new(error.kind(), error.to_string()),
                            kept: None,
                        })
                        .collect();
                }
            }
            open.iter()
                .zip(&fds)
                .filter(|(_, f)| f.revents().is_some_and(|e| !e.is_empty()))
                .map(|(&i, _)| i)
                .collect()
        };
        for i in ready {
            let sink = &mut sinks[i];
            let Some(pipe) = sink.pipe.as_ref() else {
                continue;
            };
            match nix::unistd::read(pipe, &mut buf) {
                Ok(0) => sink.pipe = None,
                Ok(n) => {
                    if sink.store(buf.get(..n).unwrap_or_default()) {
                        on_fail();
                    }
                }
                Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
                Err(e) => {
                    sink.failed.get_or_insert(e.into());
                    sink.pipe = None;
                }
            }
        }
    }
    sinks
        .into_iter()
        .filter_map(|s| {
            s.failed.map(|error| StoreFailure {
                path: s.path,
                error,
                kept: s.kept,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_silent_stream_leaves_no_file_and_a_loud_one_has_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("node");
        // An earlier attempt's output is gone once a new attempt starts.
        std::fs::write(output_file(&out, "stderr"), b"old attempt").unwrap();
        let (mut ends, cap) = capture(&out, Arc::new(|| {})).unwrap();
        assert!(!output_file(&out, "stderr").exists());
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        ends.stdout.write_all(&big).unwrap();
        drop(ends);
        assert!(cap.finish().is_empty());
        assert_eq!(std::fs::read(output_file(&out, "stdout")).unwrap(), big);
        assert!(!output_file(&out, "stderr").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(output_file(&out, "stdout"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_store_that_fails_is_reported_and_the_writer_is_not_blocked() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("node");
        // A directory where the file would go: creating it fails.
        std::fs::create_dir(output_file(&out, "stdout")).unwrap();
        let err = match capture(&out, Arc::new(|| {})) {
            // remove_file on a directory fails first: a clear refusal.
            Err(e) => e.to_string(),
            Ok(_) => panic!("a directory in the way must be refused"),
        };
        assert!(err.contains("node.stdout"), "{err}");
        std::fs::remove_dir(output_file(&out, "stdout")).unwrap();

        // A dangling symlink in the way: O_NOFOLLOW refuses it at the first byte.
        let (mut ends, cap) = capture(&out, Arc::new(|| {})).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", output_file(&out, "stdout")).unwrap();
        // More than a pipe holds: it must all be drained although not stored.
        ends.stdout.write_all(&vec![b'x'; 1 << 20]).unwrap();
        drop(ends);
        let failures = cap.finish();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].to_string().contains("node.stdout"));
    }
}
