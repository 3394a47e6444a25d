//! Copies the node's stdout/stderr pipes to agentd's fd 1/2: counts, redacts,
//! and stops at the output cap.
//!
//! Counts are of bytes the node wrote that agentd consumed from its pipes,
//! before redaction (a `[REDACTED]` marker does not change them); the cap
//! applies to the same bytes, summed over both streams. Output of exactly the
//! cap is not capped; the first byte past it closes both pipes unread and
//! uncounted, so after a cap `stdout_bytes + stderr_bytes` equals the cap.
//!
//! Without secrets the copy is splice(2), one syscall per chunk and no
//! user-space buffer; if splice is refused for the destination (EINVAL: a
//! tty, an O_APPEND file) the stream falls back to read/write.
//!
//! If the reader of fd 1/2 goes away (EPIPE: `aiopsctl exec ... | head -1`),
//! agentd closes its read end of that stream's pipe, so the node's next
//! write to it gets EPIPE, or SIGPIPE (default disposition: death), exactly
//! as without the jail; the report lists the stream in `reader_closed`.
//! agentd itself ignores SIGPIPE (`signals.rs`). Bytes read from the node
//! before the failed write count; bytes left in the pipe were never
//! consumed and do not. The other stream is unaffected. With a pty the
//! source is the terminal master, which the input side shares: there the
//! stream keeps draining and counting but forwards nothing (closing our
//! copy would not hang the terminal up, and the node must not block).
//! EBADF (no fd 1/2 at all) also only discards.
//!
//! With a pty (`tty.rs`) the stdout stream's source is the pty master:
//! everything the node writes to its terminal (fd 0, 1, 2 or /dev/tty, and
//! the line discipline's echo of the input) is one stream, counted, capped
//! and redacted like a pipe. EIO from the master means no slave is open any
//! more, which is its EOF; it is non-blocking (shared with the input side),
//! so a read that finds nothing after all waits for the next poll.
//!
//! Writes to fd 1/2 block while their reader is slow (backpressure), but not
//! past the deadline: after it, the SIGALRM timer interrupts a blocked write
//! and that stream's remaining output is dropped (still counted), so a
//! consumer that stopped reading cannot keep a timed-out jail alive.
use crate::redact::Redactor;
use crate::sys;
use aiops_proto::Stream;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

/// Bytes per splice: the node pipe's size, so one call can empty it.
const SPLICE_CHUNK: usize = 1 << 20;
/// read/write buffer, allocated only when a stream needs one.
const COPY_CHUNK: usize = 64 << 10;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Splice,
    Copy,
    /// Destination closed: drain and count only.
    Discard,
}

pub struct Pipe {
    pub stream: Stream,
    src: Option<OwnedFd>,
    dst: BorrowedFd<'static>,
    mode: Mode,
    pub bytes: u64,
    redactor: Option<Redactor>,
    /// The source is a pty master (EIO is its EOF).
    pty: bool,
    /// The destination's reader went away (EPIPE).
    pub reader_closed: bool,
}

impl Pipe {
    /// `src` None: the stream does not exist (with a pty, stderr is the
    /// terminal too).
    pub fn new(
        stream: Stream,
        src: Option<OwnedFd>,
        dst: BorrowedFd<'static>,
        redactor: Option<Redactor>,
    ) -> Pipe {
        let mode = if redactor.is_some() {
            Mode::Copy
        } else {
            Mode::Splice
        };
        Pipe {
            stream,
            src,
            dst,
            mode,
            bytes: 0,
            redactor,
            pty: false,
            reader_closed: false,
        }
    }

    /// The source is a pty master: read/write, never splice (its EAGAIN
    /// and EIO mean other things there).
    pub fn pty(mut self) -> Pipe {
        self.pty = true;
        if self.mode == Mode::Splice {
            self.mode = Mode::Copy;
        }
        self
    }

    pub fn src(&self) -> Option<BorrowedFd<'_>> {
        self.src.as_ref().map(AsFd::as_fd)
    }

    pub fn is_open(&self) -> bool {
        self.src.is_some()
    }

    /// EPIPE writing the destination: stop forwarding; a pipe source is
    /// then closed by `Pump::on_readable`, which the node sees as its
    /// reader going away.
    fn reader_gone(&mut self) {
        self.reader_closed = true;
        self.mode = Mode::Discard;
    }

    /// The source is to be closed because the destination's reader left.
    fn close_for_reader(&self) -> bool {
        self.reader_closed && !self.pty
    }

    /// An interrupted write past the deadline: stop forwarding this stream.
    fn give_up_after(&mut self, stop_at: Instant) {
        if Instant::now() >= stop_at {
            self.mode = Mode::Discard;
        }
    }
}

pub struct Pump {
    pub pipes: [Pipe; 2],
    /// Bytes still allowed under the cap.
    remaining: u64,
    pub capped: bool,
    /// The deadline: no write to fd 1/2 blocks past it.
    stop_at: Instant,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Pump {
    pub fn new(pipes: [Pipe; 2], cap: u64, stop_at: Instant) -> Pump {
        Pump {
            pipes,
            remaining: cap,
            capped: false,
            stop_at,
            buf: Vec::new(),
            out: Vec::new(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.pipes.iter().any(Pipe::is_open)
    }

    /// Move one chunk from pipe `i`, which poll reported readable (so the
    /// read side will not block). Closes the pipe at EOF.
    pub fn on_readable(&mut self, i: usize) -> io::Result<()> {
        let Some(src) = self.pipes[i].src.take() else {
            return Ok(());
        };
        if self.remaining == 0 {
            // Exactly the cap so far: only a further byte is over it.
            return match read_src(self.pipes[i].pty, &src, &mut [0u8; 1]) {
                Err(Errno::EAGAIN) => {
                    self.pipes[i].src = Some(src);
                    Ok(())
                }
                Ok(0) => finish(&mut self.pipes[i], &mut self.out, self.stop_at),
                Ok(_) => {
                    finish(&mut self.pipes[i], &mut self.out, self.stop_at)?;
                    self.close_at_cap()
                }
                Err(e) => Err(e.into()),
            };
        }
        let want = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        let moved = move_chunk(
            &mut self.pipes[i],
            &src,
            want,
            self.stop_at,
            &mut self.buf,
            &mut self.out,
        );
        let p = &mut self.pipes[i];
        match moved {
            Ok(0) => finish(p, &mut self.out, self.stop_at),
            Ok(n) => {
                p.bytes += n as u64;
                self.remaining -= n as u64;
                if p.close_for_reader() {
                    drop(src); // the node's next write: EPIPE/SIGPIPE
                } else {
                    p.src = Some(src);
                }
                Ok(())
            }
            Err(e) => {
                p.src = Some(src);
                if e.kind() == io::ErrorKind::WouldBlock {
                    return Ok(()); // a pty master's readiness was spurious
                }
                Err(e)
            }
        }
    }

    /// The cap is reached: flush what was already consumed, stop reading.
    fn close_at_cap(&mut self) -> io::Result<()> {
        self.capped = true;
        for p in &mut self.pipes {
            if p.src.take().is_some() {
                finish(p, &mut self.out, self.stop_at)?;
            }
        }
        Ok(())
    }

    /// Stop reading (the jail is gone and its pipes did not reach EOF).
    pub fn abandon(&mut self) -> io::Result<()> {
        for p in &mut self.pipes {
            if p.src.take().is_some() {
                finish(p, &mut self.out, self.stop_at)?;
            }
        }
        Ok(())
    }
}

/// One splice or read(+write) of at most `want` bytes; 0 means EOF.
fn move_chunk(
    p: &mut Pipe,
    src: &OwnedFd,
    want: usize,
    stop_at: Instant,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> io::Result<usize> {
    loop {
        match p.mode {
            Mode::Splice => match sys::splice(src.as_fd(), p.dst, want.min(SPLICE_CHUNK)) {
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => p.give_up_after(stop_at),
                Err(Errno::EAGAIN) => wait_writable(p, stop_at)?,
                Err(Errno::EINVAL) => p.mode = Mode::Copy,
                // Nothing was moved: the data stays in the pipe, uncounted.
                Err(Errno::EPIPE) if !p.pty => {
                    p.reader_gone();
                    return Ok(0);
                }
                Err(Errno::EPIPE) => p.reader_gone(),
                Err(Errno::EBADF) => p.mode = Mode::Discard,
                Err(e) => return Err(e.into()),
            },
            Mode::Copy | Mode::Discard => {
                if buf.is_empty() {
                    buf.resize(COPY_CHUNK, 0);
                }
                let n = read_src(p.pty, src, &mut buf[..want.min(COPY_CHUNK)])?;
                if p.mode == Mode::Copy {
                    forward(p, &buf[..n], out, stop_at)?;
                }
                return Ok(n);
            }
        }
    }
}

fn read_src(pty: bool, src: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match unistd::read(src, buf) {
            Err(Errno::EINTR) => {}
            Err(Errno::EIO) if pty => return Ok(0),
            r => return r,
        }
    }
}

/// Redact (if needed) and write `data` to the pipe's destination.
fn forward(p: &mut Pipe, data: &[u8], out: &mut Vec<u8>, stop_at: Instant) -> io::Result<()> {
    match &mut p.redactor {
        Some(r) => {
            out.clear();
            r.feed(data, out);
            write_dst(p, out, stop_at)
        }
        None => write_dst(p, data, stop_at),
    }
}

/// EOF or cap on a stream: flush the redactor's held tail.
fn finish(p: &mut Pipe, out: &mut Vec<u8>, stop_at: Instant) -> io::Result<()> {
    if let Some(r) = &mut p.redactor {
        out.clear();
        r.finish(out);
        write_dst(p, out, stop_at)?;
    }
    Ok(())
}

fn write_dst(p: &mut Pipe, mut data: &[u8], stop_at: Instant) -> io::Result<()> {
    while !data.is_empty() && p.mode == Mode::Copy {
        match unistd::write(p.dst, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => p.give_up_after(stop_at),
            Err(Errno::EAGAIN) => wait_writable(p, stop_at)?,
            Err(Errno::EPIPE) => p.reader_gone(),
            Err(Errno::EBADF) => p.mode = Mode::Discard,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// fd 1/2 may be non-blocking (set by whoever shares them with us): wait
/// for room, but not past the deadline.
fn wait_writable(p: &mut Pipe, stop_at: Instant) -> io::Result<()> {
    let left = stop_at.saturating_duration_since(Instant::now());
    let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(p.dst, PollFlags::POLLOUT)];
    match poll(&mut fds, timeout) {
        Ok(0) => p.mode = Mode::Discard,
        Ok(_) | Err(Errno::EINTR) => p.give_up_after(stop_at),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
