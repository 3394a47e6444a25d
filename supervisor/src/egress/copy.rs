//! The byte copy of an allowed connection, with the node's limits: a shared
//! byte budget, an idle timeout over both directions, and writes that may
//! not block longer than the idle timeout.
//!
//! Each direction moves bytes socket → pipe → socket with splice(2), so
//! the payload is never copied through user space (the same idea as
//! agentd's output pump); tokio's readiness drives the non-blocking calls.
use super::proxy::{millis, Conn, Shared};
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::sys::socket::{shutdown, Shutdown};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Bytes per splice and the pipe's size (fcntl(2) F_SETPIPE_SZ; 1 MiB is
/// the default /proc/sys/fs/pipe-max-size).
const CHUNK: usize = 1 << 20;
const PIPE_BYTES: i32 = 1 << 20;

/// Copy both ways until both sides are done or a limit cuts the
/// connection; returns how it ended. `first` goes upstream before the rest.
pub async fn splice_both(
    client: TcpStream,
    mut upstream: TcpStream,
    first: Vec<u8>,
    sh: &Shared,
    conn: &Conn,
) -> String {
    let last = AtomicU64::new(0);
    let ctx = Copy {
        sh,
        last: &last,
        start: Instant::now(),
    };
    if !first.is_empty() {
        if let Err(e) = ctx.account(&conn.up, first.len()) {
            return e;
        }
        if let Err(e) = upstream.write_all(&first).await {
            return format!("write upstream: {e}");
        }
    }
    let up = ctx.copy(&client, &upstream, &conn.up);
    let down = ctx.copy(&upstream, &client, &conn.down);
    match tokio::try_join!(up, down) {
        Ok(_) => "closed".into(),
        Err(e) => e,
    }
}

struct Copy<'a> {
    sh: &'a Shared,
    /// Milliseconds after `start` of the last byte either way.
    last: &'a AtomicU64,
    start: Instant,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    // EPERM past the per-user pipe budget: the default size still works.
    let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
    Ok((r, w))
}

/// One non-blocking splice(2); WouldBlock tells tokio to wait for readiness.
fn splice_once(from: &impl AsFd, to: &impl AsFd, len: usize) -> io::Result<usize> {
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    splice(from, None, to, None, len, flags).map_err(io::Error::from)
}

impl Copy<'_> {
    fn account(&self, counter: &AtomicU64, n: usize) -> Result<(), String> {
        let n = n as u64;
        let total = self.sh.total_bytes.fetch_add(n, Ordering::Relaxed) + n;
        if total > self.sh.limits.max_bytes {
            return Err(format!(
                "node byte limit ({} bytes) reached",
                self.sh.limits.max_bytes
            ));
        }
        counter.fetch_add(n, Ordering::Relaxed);
        self.touch();
        Ok(())
    }

    fn touch(&self) {
        self.last
            .store(millis(self.start.elapsed()), Ordering::Relaxed);
    }

    /// Idle long enough, counting both directions?
    fn idle_for(&self, idle: Duration) -> bool {
        let quiet = millis(self.start.elapsed()).saturating_sub(self.last.load(Ordering::Relaxed));
        quiet >= millis(idle)
    }

    async fn copy(
        &self,
        src: &TcpStream,
        dst: &TcpStream,
        counter: &AtomicU64,
    ) -> Result<(), String> {
        let idle = self.sh.limits.idle_timeout;
        let (pr, pw) = pipe().map_err(|e| format!("pipe: {e}"))?;
        loop {
            // Socket → pipe. The pipe is empty here, so only the socket can block.
            let n = loop {
                match tokio::time::timeout(idle, src.readable()).await {
                    Err(_) if self.idle_for(idle) => {
                        return Err(format!("idle for {} s", idle.as_secs()))
                    }
                    Err(_) => continue,
                    Ok(Err(e)) => return Err(format!("read: {e}")),
                    Ok(Ok(())) => {}
                }
                match src.try_io(Interest::READABLE, || splice_once(src, &pw, CHUNK)) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(format!("read: {e}")),
                }
            };
            if n == 0 {
                let _ = shutdown(dst.as_raw_fd(), Shutdown::Write);
                return Ok(());
            }
            self.account(counter, n)?;
            // Pipe → socket, all of it, before reading more.
            let mut left = n;
            while left > 0 {
                match tokio::time::timeout(idle, dst.writable()).await {
                    Err(_) => return Err(format!("peer stopped reading for {} s", idle.as_secs())),
                    Ok(Err(e)) => return Err(format!("write: {e}")),
                    Ok(Ok(())) => {}
                }
                match dst.try_io(Interest::WRITABLE, || splice_once(&pr, dst, left)) {
                    Ok(m) => {
                        left -= m;
                        self.touch();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(format!("write: {e}")),
                }
            }
        }
    }
}
