//! Arbitrary UTF-8 as a profile file: any error is fine, a panic is a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|src: &str| {
    // The file stem matters (name/file mismatch); try the shipped names too.
    for name in ["restrictive.toml", "agent.toml", "p.toml"] {
        let _ = aiops_policy::profile::parse_profile(Path::new(name), src);
    }
});
