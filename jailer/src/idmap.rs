//! Step 5: map exactly one id, inside = outside (as bubblewrap does), after
//! denying setgroups(2) as the kernel requires of an unprivileged writer.
use crate::error::JailError;
use std::fs::OpenOptions;
use std::io::Write;

fn write_proc(path: &'static str, text: &str) -> Result<(), JailError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| JailError::IdMaps { path, source })
}

pub fn write_id_maps(uid: u32, gid: u32) -> Result<(), JailError> {
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/gid_map", &format!("{gid} {gid} 1\n"))?;
    write_proc("/proc/self/uid_map", &format!("{uid} {uid} 1\n"))
}
