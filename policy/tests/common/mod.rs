//! Shared by the integration tests: golden-file comparison and fixtures.
#![allow(dead_code, clippy::unwrap_used)]
use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn profiles_dir() -> PathBuf {
    repo_root().join("profiles")
}

/// Every shipped profile, as (name, path), sorted by name.
pub fn shipped_profiles() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(profiles_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| (p.file_stem().unwrap().to_str().unwrap().to_string(), p))
        .collect();
    v.sort();
    assert!(
        !v.is_empty(),
        "no profiles found in {}",
        profiles_dir().display()
    );
    v
}

pub fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// Compare `actual` with the file at `path`, or rewrite it under
/// `UPDATE_GOLDEN=1`. Returns a readable mismatch description.
pub fn check_golden(path: &Path, actual: &str) -> Result<(), String> {
    if updating() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return Ok(());
    }
    let expected = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => return Err(format!("{}: {e} (new golden file?)", path.display())),
    };
    if expected == actual {
        return Ok(());
    }
    let (el, al): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let i = el.iter().zip(al.iter()).take_while(|(a, b)| a == b).count();
    Err(format!(
        "{} differs at line {}:\n  golden: {:?}\n  actual: {:?}",
        path.display(),
        i + 1,
        el.get(i).unwrap_or(&"<end of file>"),
        al.get(i).unwrap_or(&"<end of file>"),
    ))
}

/// Fail once with every mismatch listed and how to accept the change.
pub fn report(failures: Vec<String>) {
    if !failures.is_empty() {
        panic!(
            "{} golden check(s) failed:\n{}\n\nIf the change is intended: UPDATE_GOLDEN=1 cargo test -p aiops-policy, then review `git diff`",
            failures.len(),
            failures.join("\n")
        );
    }
}
