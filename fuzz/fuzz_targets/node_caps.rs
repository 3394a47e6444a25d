//! Arbitrary UTF-8 as a node's capabilities, then intersected with a fixed
//! profile and compiled for Linux and macOS: errors are fine, panics are bugs.
#![no_main]
use aiops_policy::sbpl::compile_sbpl_for;
use aiops_policy::{compile, AbsPath, CompileContext, HostFacts, NodeCaps, PathVars, Profile};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

const PROFILE: &str = r#"
schema = 1
name = "fuzz"
description = "allowlist profile with every section set"
require = ["userns", "seccomp", "landlock>=4"]
[fs]
read = ["/usr", "/etc", "$HOME/.cache"]
write = ["$WORKSPACE", "$TMPDIR/x"]
exec = ["/usr", "$WORKSPACE"]
[net]
mode = "allowlist"
allow = ["api.example.com:443", "*.example.org:443"]
[env]
allow = ["PATH", "LC_*"]
secrets = ["API_KEY"]
[limits]
timeout = "1h"
memory = "8GiB"
"#;

fn setup() -> &'static Option<(Profile, CompileContext)> {
    static S: OnceLock<Option<(Profile, CompileContext)>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("aiops-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join("fuzz.toml");
        std::fs::write(&path, PROFILE).ok()?;
        let profile = aiops_policy::ProfileLoader { search: vec![dir] }.load_path(&path).ok()?;
        let ctx = CompileContext {
            vars: PathVars {
                workspace: AbsPath::new("/work/ws").ok(),
                home: AbsPath::new("/home/u").ok(),
                tmpdir: AbsPath::new("/tmp").ok(),
            },
            cwd: AbsPath::new("/work/ws").ok()?,
            host_env: [("PATH".to_string(), "/usr/bin".to_string())].into_iter().collect(),
            agentd: AbsPath::new("/usr/libexec/aiops/aiops-agentd").ok()?,
        };
        Some((profile, ctx))
    })
}

fuzz_target!(|src: &str| {
    let Ok(node) = aiops_policy::error::from_toml::<NodeCaps>(Path::new("node.toml"), src) else {
        return;
    };
    if let Some((profile, ctx)) = setup() {
        let _ = compile(profile, &node, &HostFacts::linux(7), ctx);
        let _ = compile_sbpl_for(profile, &node, ctx);
    }
});
