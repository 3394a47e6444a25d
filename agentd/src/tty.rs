//! The node's own terminal (`AgentSpec::tty`): a pty of the jail's private
//! devpts (the jailer mounts one at /dev/pts, with /dev/ptmx pointing into
//! it), so the node never holds a handle on the caller's terminal.
//!
//! agentd keeps the master and relays it: bytes read from its own fd 0 (the
//! caller's terminal, which `aiopsctl` put in raw mode, or a pipe) are
//! written to the master, where the jail's line discipline turns 0x03 into
//! SIGINT and 0x1a into SIGTSTP for the node's foreground group; what the
//! master reads is the node's output, which goes through the `Pump` as
//! stdout (counted, capped, redacted). The caller's window size is copied
//! to the master at start and on every SIGWINCH.
use crate::error::AgentError;
use crate::sys;
use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::stat::Mode;
use nix::unistd;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Bytes of input moved per read of fd 0 (one burst of typing or pasting).
const INPUT_CHUNK: usize = 4096;
/// VEOF's default (^D), if the terminal's own cannot be read.
const DEFAULT_EOF: u8 = 0x04;

pub struct Pty {
    /// Non-blocking: a node that does not read its input must not stall agentd.
    pub master: OwnedFd,
    pub slave_path: CString,
    /// The slave's VEOF at start (the master's own settings are not the
    /// line discipline's); 0 (_POSIX_VDISABLE) for none.
    pub eof_char: u8,
}

fn pty_err(what: &'static str) -> impl FnOnce(Errno) -> AgentError {
    move |source| AgentError::Pty { what, source }
}

impl Pty {
    pub fn open() -> Result<Pty, AgentError> {
        let m = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .map_err(pty_err("open /dev/ptmx"))?;
        grantpt(&m).map_err(pty_err("grantpt"))?;
        unlockpt(&m).map_err(pty_err("unlockpt"))?;
        let name = ptsname_r(&m).map_err(pty_err("ptsname"))?;
        let slave_path = CString::new(name).map_err(|_| AgentError::Pty {
            what: "ptsname",
            source: Errno::EINVAL,
        })?;
        let master = OwnedFd::from(m);
        fcntl(
            &master,
            FcntlArg::F_SETFL(OFlag::O_RDWR | OFlag::O_NONBLOCK),
        )
        .map_err(pty_err("set master non-blocking"))?;
        copy_winsize(master.as_fd());
        let eof_char = open(
            slave_path.as_c_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .and_then(|slave| nix::sys::termios::tcgetattr(&slave))
        .map(|t| t.control_chars[nix::sys::termios::SpecialCharacterIndices::VEOF as usize])
        .unwrap_or(DEFAULT_EOF);
        Ok(Pty {
            master,
            slave_path,
            eof_char,
        })
    }

    /// In the forked node, before exec: a new session whose controlling
    /// terminal is the slave, which becomes fds 0-2.
    pub fn attach_slave(&self) -> Result<(), Errno> {
        unistd::setsid()?;
        let slave = open(
            self.slave_path.as_c_str(),
            OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        sys::set_controlling_tty(slave.as_fd())?;
        unistd::dup2_stdin(&slave)?;
        unistd::dup2_stdout(&slave)?;
        unistd::dup2_stderr(&slave)
    }
}

/// The caller's window size (the first of fds 0-2 that is a terminal)
/// onto `master`; nothing if none is.
pub fn copy_winsize(master: BorrowedFd<'_>) {
    if let Some(ws) = (0..3).find_map(|fd| sys::get_winsize(sys::stdio(fd)).ok()) {
        let _ = sys::set_winsize(master, &ws);
    }
}

/// agentd's fd 0 → the master.
pub struct Input {
    /// None after EOF or an error on fd 0.
    src: Option<BorrowedFd<'static>>,
    /// fd 0 is a terminal: a zero-length read is a ^D typed in canonical
    /// mode (before the caller made it raw), not the end, unless it hung up.
    src_is_tty: bool,
    dst: OwnedFd,
    pending: Vec<u8>,
    eof_char: u8,
}

impl Input {
    /// `dst` is a copy of the (non-blocking) master; `eof_char` `Pty`'s.
    pub fn new(dst: OwnedFd, eof_char: u8) -> Input {
        Input {
            src: Some(sys::stdio(0)),
            src_is_tty: unistd::isatty(sys::stdio(0)).unwrap_or(false),
            dst,
            pending: Vec::new(),
            eof_char,
        }
    }

    /// fd 0, while there is room to take more input.
    pub fn wants_read(&self) -> Option<BorrowedFd<'static>> {
        self.src.filter(|_| self.pending.is_empty())
    }

    /// The master, while input waits for room.
    pub fn wants_write(&self) -> Option<BorrowedFd<'_>> {
        (!self.pending.is_empty()).then(|| self.dst.as_fd())
    }

    /// SIGWINCH: the caller's terminal changed size.
    pub fn copy_winsize(&self) {
        copy_winsize(self.dst.as_fd());
    }

    /// fd 0 is readable (or `hung_up`): take one chunk. At its end the
    /// terminal's EOF character is sent (none if VEOF is disabled), so a
    /// node reading a `-t` pipe sees end of input.
    pub fn on_readable(&mut self, hung_up: bool) {
        let Some(src) = self.src else { return };
        let mut buf = [0u8; INPUT_CHUNK];
        match unistd::read(src, &mut buf) {
            Ok(0) => {
                if !self.src_is_tty || hung_up {
                    self.src = None;
                }
                // 0 is _POSIX_VDISABLE on Linux: no EOF character.
                if self.eof_char != 0 {
                    self.pending.push(self.eof_char);
                }
            }
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            // The caller's terminal hung up: no more input, the node runs on.
            Err(_) => self.src = None,
        }
        self.on_writable();
    }

    /// The master has room (or may have): write what is pending.
    pub fn on_writable(&mut self) {
        while !self.pending.is_empty() {
            match unistd::write(&self.dst, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                // EIO: no slave is open any more; the input has nowhere to go.
                Err(_) => {
                    self.pending.clear();
                    self.src = None;
                }
            }
        }
    }
}
