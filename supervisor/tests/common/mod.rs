//! What the tests that run the real `aiopsctl` share: the repository root
//! and the binary started from it, as a user would, with no profile path
//! or log filter from the caller's environment.
#![allow(clippy::unwrap_used, dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

pub fn aiopsctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aiopsctl"))
        .args(args)
        .current_dir(repo_root())
        .env_remove("AIOPS_PROFILE_PATH")
        .env_remove("AIOPS_LOG")
        .output()
        .unwrap()
}
