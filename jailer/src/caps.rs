//! Step 10: a new session (no controlling terminal, so no TIOCSTI into the
//! operator's shell), every capability dropped, no_new_privs set.
use crate::error::JailError;
use caps::CapSet;

pub fn setsid() -> Result<(), JailError> {
    nix::unistd::setsid()
        .map(|_| ())
        .map_err(|e| JailError::Setsid { source: e.into() })
}

/// Bounding first (dropping it needs CAP_SETPCAP, still held), then
/// ambient and inheritable, then effective and permitted.
pub fn drop_caps_and_set_nnp() -> Result<(), JailError> {
    for (set, name) in [
        (CapSet::Bounding, "bounding"),
        (CapSet::Ambient, "ambient"),
        (CapSet::Inheritable, "inheritable"),
        (CapSet::Effective, "effective"),
        (CapSet::Permitted, "permitted"),
    ] {
        caps::clear(None, set).map_err(|source| JailError::DropCaps { set: name, source })?;
    }
    set_no_new_privs()
}

pub fn set_no_new_privs() -> Result<(), JailError> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| JailError::NoNewPrivs { source: e.into() })
}
