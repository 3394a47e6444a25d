//! Arbitrary UTF-8 as a git config file, read by aiops-guard in the jailer
//! and the supervisor: a previous node may have written it (a repository
//! it created). Entries or none; panics are bugs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|src: &str| {
    let mut out = vec![];
    aiops_guard::config::parse(src, Path::new("/ws/.git/config"), &mut out);
    for e in &out {
        assert!(e.key.contains('.'), "{e:?}");
    }
});
