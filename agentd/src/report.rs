//! agentd → supervisor: one `Report` per SOCK_SEQPACKET message.
//!
//! A lost supervisor must not stop the node's accounting or leave zombies,
//! so send failures are remembered, not fatal: the exit code still carries
//! the outcome to the jailer.
use crate::error::AgentError;
use crate::sys;
use aiops_proto::{ExitReport, Report, Step, Stream, AGENT_REPORT_FD};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{send, MsgFlags};
use std::os::fd::{AsRawFd, OwnedFd};

pub struct ReportTx {
    sock: Option<OwnedFd>,
    /// First send failure, if any (EPIPE when the supervisor went away).
    pub failed: Option<nix::errno::Errno>,
}

impl ReportTx {
    /// Adopt the report socket at `AGENT_REPORT_FD`; without one, reports
    /// are dropped (agentd still runs the node).
    pub fn adopt() -> ReportTx {
        let sock = sys::adopt_fd(AGENT_REPORT_FD).ok();
        if let Some(s) = &sock {
            // The node must never hold the report socket (it could forge reports).
            if fcntl(s, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).is_err() {
                return ReportTx {
                    sock: None,
                    failed: None,
                };
            }
        }
        ReportTx { sock, failed: None }
    }

    pub fn started(&mut self, pid: u32) {
        self.send(&Report::Started { pid });
    }

    pub fn output(&mut self, stream: Stream, bytes: u64) {
        self.send(&Report::Output { stream, bytes });
    }

    pub fn exited(&mut self, report: ExitReport) {
        self.send(&Report::Exited(report));
    }

    pub fn setup_failed(&mut self, err: &AgentError) {
        let mut message = err.chain();
        // Stay well inside MAX_REPORT_BYTES even after JSON escaping.
        if message.len() > 1024 {
            let mut end = 1024;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let step: Step = err.step();
        self.send(&Report::SetupFailed {
            step,
            errno: err.errno(),
            message,
        });
    }

    fn send(&mut self, report: &Report) {
        let Some(sock) = &self.sock else { return };
        if self.failed.is_some() {
            return;
        }
        let frame = match report.encode() {
            Ok(f) => f,
            Err(_) => {
                self.failed = Some(nix::errno::Errno::EMSGSIZE);
                return;
            }
        };
        loop {
            match send(sock.as_raw_fd(), &frame, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    self.failed = Some(e);
                    return;
                }
            }
        }
    }
}
