//! Step 13: hand agentd its spec in a sealed memfd at fd 3 and the report
//! socket at fd 4, close everything else, and execve with an empty
//! environment (agentd gets the node's env from the spec).
use crate::error::JailError;
use crate::sys;
use aiops_proto::{AgentSpec, AGENT_REPORT_FD, AGENT_SPEC_FD};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use std::convert::Infallible;
use std::ffi::{CStr, CString};
use std::io::{self, Seek, Write};
use std::os::fd::{AsFd, IntoRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The report socket's current fd number; moved to fd 4 right before exec.
pub struct ReportFd(pub RawFd);

impl ReportFd {
    /// Best effort: the caller may already be gone.
    pub fn send(&self, frame: &[u8]) {
        let _ = nix::sys::socket::send(self.0, frame, nix::sys::socket::MsgFlags::MSG_NOSIGNAL);
    }
}

fn se(what: &'static str) -> impl FnOnce(nix::Error) -> JailError {
    move |e| JailError::AgentSpec {
        what,
        source: e.into(),
    }
}

/// Write and seal the spec; the returned raw fd is ours to place.
fn write_spec_memfd(spec: &AgentSpec) -> Result<RawFd, JailError> {
    let json = serde_json::to_vec(spec).map_err(|e| JailError::AgentSpec {
        what: "encode",
        source: io::Error::other(e.to_string()),
    })?;
    let fd = memfd_create(
        c"aiops-agent-spec",
        MFdFlags::MFD_ALLOW_SEALING | MFdFlags::MFD_CLOEXEC,
    )
    .map_err(se("memfd_create"))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(&json)
        .and_then(|_| f.rewind())
        .map_err(|source| JailError::AgentSpec {
            what: "write",
            source,
        })?;
    let seals = SealFlag::F_SEAL_WRITE
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_SEAL;
    fcntl(f.as_fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(se("F_ADD_SEALS"))?;
    Ok(f.into_raw_fd())
}

/// Move `spec` and `report` to fds 3 and 4 (without CLOEXEC) and close the rest.
fn place_fds(spec: RawFd, report: &mut ReportFd) -> Result<(), JailError> {
    let pe = |what| move |source| JailError::AgentSpec { what, source };
    let spec_hi = sys::dup_above(spec, AGENT_REPORT_FD + 1).map_err(pe("dup spec fd"))?;
    let rep_hi = sys::dup_above(report.0, AGENT_REPORT_FD + 1).map_err(pe("dup report fd"))?;
    sys::dup2_onto(spec_hi, AGENT_SPEC_FD).map_err(pe("dup2 spec fd"))?;
    sys::dup2_onto(rep_hi, AGENT_REPORT_FD).map_err(pe("dup2 report fd"))?;
    report.0 = AGENT_REPORT_FD;
    sys::clear_cloexec(AGENT_SPEC_FD).map_err(pe("clear cloexec"))?;
    sys::clear_cloexec(AGENT_REPORT_FD).map_err(pe("clear cloexec"))?;
    let first = u32::try_from(AGENT_REPORT_FD + 1).unwrap_or(5);
    sys::close_fd_range(first, u32::MAX).map_err(pe("close_range"))
}

pub fn execve_agentd(
    path: &Path,
    spec: &AgentSpec,
    report: &mut ReportFd,
) -> Result<Infallible, JailError> {
    let memfd = write_spec_memfd(spec)?;
    place_fds(memfd, report)?;
    let ee = |source| JailError::ExecAgentd {
        path: path.into(),
        source,
    };
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|e| ee(io::Error::other(e)))?;
    let argv: [&CStr; 1] = [c"aiops-agentd"];
    let envp: [&CStr; 0] = [];
    match nix::unistd::execve(&cpath, &argv, &envp) {
        Ok(never) => match never {},
        Err(e) => Err(ee(e.into())),
    }
}
