//! The byte copy of an allowed connection, with the node's limits: a shared
//! byte budget, an idle timeout over both directions, and writes that may
//! not block longer than the idle timeout.
use super::proxy::{millis, Conn, Shared};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Per direction; large enough that the copy is not syscall-bound.
const COPY_CHUNK: usize = 256 * 1024;

/// Copy both ways until both sides are done or a limit cuts the
/// connection; returns how it ended. `first` goes upstream before the rest.
pub async fn splice_both(
    client: TcpStream,
    upstream: TcpStream,
    first: Vec<u8>,
    sh: &Shared,
    conn: &Conn,
) -> String {
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let last = AtomicU64::new(0);
    let start = Instant::now();
    let ctx = Copy {
        sh,
        last: &last,
        start,
    };
    if !first.is_empty() {
        if let Err(e) = ctx.account(&conn.up, first.len()) {
            return e;
        }
        if let Err(e) = uw.write_all(&first).await {
            return format!("write upstream: {e}");
        }
    }
    let up = ctx.copy(&mut cr, &mut uw, &conn.up);
    let down = ctx.copy(&mut ur, &mut cw, &conn.down);
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
        self.last
            .store(millis(self.start.elapsed()), Ordering::Relaxed);
        Ok(())
    }

    async fn copy(
        &self,
        r: &mut (impl AsyncRead + Unpin),
        w: &mut (impl AsyncWrite + Unpin),
        counter: &AtomicU64,
    ) -> Result<(), String> {
        let idle = self.sh.limits.idle_timeout;
        let mut buf = vec![0u8; COPY_CHUNK];
        loop {
            let n = match tokio::time::timeout(idle, r.read(&mut buf)).await {
                Ok(Ok(0)) => {
                    let _ = w.shutdown().await;
                    return Ok(());
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(format!("read: {e}")),
                Err(_) => {
                    let quiet = millis(self.start.elapsed())
                        .saturating_sub(self.last.load(Ordering::Relaxed));
                    if quiet >= millis(idle) {
                        return Err(format!("idle for {} s", idle.as_secs()));
                    }
                    continue;
                }
            };
            self.account(counter, n)?;
            match tokio::time::timeout(idle, w.write_all(&buf[..n])).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("write: {e}")),
                Err(_) => return Err(format!("peer stopped reading for {} s", idle.as_secs())),
            }
        }
    }
}
