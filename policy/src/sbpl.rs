//! macOS Seatbelt (SBPL) compilation from the same effective capabilities.
//!
//! The text is the checked-in `(deny default)` base file plus rules compiled
//! from an `Effective`. Every path the node brings (workspace, read, write,
//! exec roots, protected paths, agentd, temp dir) appears in the text only as
//! `(param "NAME")`; the runtime passes the values with
//! `sandbox-exec -D NAME=VALUE`, so no path can change the policy's syntax.
//!
//! `compile_sbpl_for` is the macOS entry point (`aiopsctl exec`, `profile
//! explain --sbpl` and the golden tests): profile ∩ node → `Effective`,
//! then the SBPL, the environment and the protected paths, from the same
//! compile steps as a `JailPlan`. Like a `JailPlan`, the result carries the
//! profile's `require` list; the runtime refuses a node whose required
//! layers its host lacks with `compile::check_required_layers`, the check
//! the Linux compile makes. Seatbelt matches resolved paths (`/tmp` is
//! `/private/tmp`), so the runtime passes each value through realpath(3)
//! before handing it to `-D`. There is no private tmpfs on macOS: `TMPDIR`
//! is `ctx.vars.tmpdir` (default `/tmp`), so the runtime should make that
//! a fresh per-run directory.
use crate::caps::{effective, Effective};
use crate::compile::{build_env, protected_paths, CompileContext, ALLOWLIST_PROXY_PORT};
use crate::net::NetMode;
use crate::path::AbsPath;
use crate::plan::RunLimits;
use crate::{LayerReq, NodeCaps, PolicyError, Profile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The checked-in base: `(version 1)`, `(deny default)` and what any process
/// needs to start on macOS, each rule with its reason.
pub const BASE: &str = include_str!("sbpl/base.sbpl");

/// Where temporary files go when the context names no `$TMPDIR`.
const DEFAULT_TMPDIR: &str = "/tmp";

/// A compiled Seatbelt profile: the policy text and the `-D` parameters, in
/// the order they are first used in the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SbplPlan {
    pub text: String,
    pub params: Vec<(String, String)>,
}

impl SbplPlan {
    /// `sandbox-exec` arguments: `-D NAME=VALUE ... -p TEXT`.
    pub fn sandbox_exec_args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(self.params.len() * 2 + 2);
        for (k, v) in &self.params {
            args.push("-D".into());
            args.push(format!("{k}={v}"));
        }
        args.push("-p".into());
        args.push(self.text.clone());
        args
    }
}

/// Builds the text and the parameter list together so that each parameter
/// is declared exactly where it is first referenced.
struct Builder {
    text: String,
    params: Vec<(String, String)>,
}

impl Builder {
    /// Registers `value` under `name` and returns the SBPL expression for it.
    fn param(&mut self, name: String, value: &AbsPath) -> String {
        let expr = format!("(param \"{name}\")");
        self.params.push((name, value.to_string()));
        expr
    }
    fn line(&mut self, s: &str) {
        self.text.push_str(s);
        self.text.push('\n');
    }
}

/// Everything `sandbox-exec` needs to run one node: the macOS counterpart
/// of a `JailPlan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxExecPlan {
    pub sbpl: SbplPlan,
    pub profile: String,
    pub net: NetMode,
    /// The node's whole environment (`compile::build_env`).
    pub env: BTreeMap<String, String>,
    /// Protected paths inside writable roots (`compile::protected_paths`).
    pub protected: Vec<AbsPath>,
    pub run: RunLimits,
    /// Declared secrets, by name: only aiops-jailer (Linux) injects them.
    pub secrets: Vec<String>,
    /// The layers the profile requires (see the module docs).
    pub require: Vec<LayerReq>,
}

/// Compile a profile and a node's declared capabilities for `sandbox-exec`,
/// as `compile::compile` does for Linux.
pub fn compile_sbpl_for(
    profile: &Profile,
    node: &NodeCaps,
    ctx: &CompileContext,
) -> Result<SandboxExecPlan, PolicyError> {
    let eff = effective(profile, node, &ctx.vars)?;
    Ok(SandboxExecPlan {
        sbpl: compile_sbpl(&eff, ctx)?,
        profile: eff.profile.clone(),
        net: eff.net,
        env: build_env(&eff, ctx),
        protected: protected_paths(&eff),
        run: RunLimits {
            timeout_ms: eff.limits.timeout.millis(),
            output_bytes: eff.limits.output.0,
        },
        secrets: eff.secrets.iter().map(|s| s.as_str().to_string()).collect(),
        require: eff.require.clone(),
    })
}

pub fn compile_sbpl(eff: &Effective, ctx: &CompileContext) -> Result<SbplPlan, PolicyError> {
    if eff.unconfined {
        return Ok(SbplPlan {
            text: format!(
                "; unconfined: profile {} opts out of the sandbox; nothing is denied (audited)\n\
                 (version 1)\n(allow default)\n",
                comment_safe(&eff.profile)
            ),
            params: vec![],
        });
    }
    let tmpdir = match &ctx.vars.tmpdir {
        Some(t) => t.clone(),
        None => AbsPath::new(DEFAULT_TMPDIR).map_err(|reason| PolicyError::Invalid {
            what: "tmpdir".into(),
            reason,
        })?,
    };
    let cwd_ok = eff
        .read
        .iter()
        .chain(eff.write.iter())
        .chain(std::iter::once(&tmpdir))
        .any(|r| r.contains(&ctx.cwd));
    if !cwd_ok {
        return Err(PolicyError::Invalid {
            what: "cwd".into(),
            reason: format!("{} is not inside any path the sandbox allows", ctx.cwd),
        });
    }

    let mut b = Builder {
        text: String::with_capacity(BASE.len() + 2048),
        params: vec![],
    };
    b.text.push_str(BASE);
    let _ = writeln!(
        b.text,
        "\n; ---- compiled from profile {} ----",
        comment_safe(&eff.profile)
    );

    let read: Vec<&AbsPath> = eff.read.iter().filter(|p| !eff.write.contains(p)).collect();
    if !read.is_empty() {
        b.line("\n; Read-only roots (fs.read).");
        for (i, p) in read.into_iter().enumerate() {
            let e = b.param(format!("READ_{i}"), p);
            b.line(&format!("(allow file-read* {})", subpath(&e)));
        }
    }
    if !eff.write.is_empty() {
        b.line("\n; Writable roots (fs.write).");
        for (i, p) in eff.write.iter().enumerate() {
            let e = b.param(format!("WRITE_{i}"), p);
            b.line(&format!("(allow file-read* file-write* {})", subpath(&e)));
        }
    }
    if !eff.exec.is_empty() {
        b.line("\n; Exec roots (fs.exec): run and map as code; a binary must also be readable.");
        for (i, p) in eff.exec.iter().enumerate() {
            let e = b.param(format!("EXEC_{i}"), p);
            b.line(&format!(
                "(allow process-exec file-read* file-map-executable {})",
                subpath(&e)
            ));
        }
    }
    b.line("\n; The node's private temporary directory ($TMPDIR).");
    let e = b.param("TMPDIR".into(), &tmpdir);
    b.line(&format!("(allow file-read* file-write* {})", subpath(&e)));
    b.line("\n; aiops-agentd itself: sandbox-exec applies this profile, then execs it.");
    let e = b.param("AGENTD".into(), &ctx.agentd);
    b.line(&format!(
        "(allow process-exec file-read* file-map-executable (literal {e}))"
    ));

    let protected = protected_paths(eff);
    if !protected.is_empty() {
        // Last of the file rules: for the same path the later rule wins, so no
        // write, exec or $TMPDIR allow above can reopen a protected path.
        b.line("\n; Protected paths inside writable roots: what the host later runs or trusts");
        b.line("; (.git/hooks, .envrc, editor config) stays read-only, even when absent.");
        for (i, p) in protected.iter().enumerate() {
            let e = b.param(format!("PROTECT_{i}"), p);
            b.line(&format!("(deny file-write* {})", subpath(&e)));
        }
    }
    net_rules(&mut b, eff.net);
    Ok(SbplPlan {
        text: b.text,
        params: b.params,
    })
}

/// A profile name is `[a-z0-9-]` when it comes from a file, but `Effective`
/// is plain data: keep anything else (a newline ending the comment) out.
fn comment_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn subpath(param_expr: &str) -> String {
    format!("(subpath {param_expr})")
}

fn net_rules(b: &mut Builder, mode: NetMode) {
    match mode {
        NetMode::None => b.line("\n; net = none: (deny default) already denies every socket."),
        NetMode::Loopback => {
            b.line("\n; net = loopback: talk to and listen on localhost only.");
            b.line("(allow network* (remote ip \"localhost:*\"))");
            b.line("(allow network-bind network-inbound (local ip \"localhost:*\"))");
        }
        NetMode::Allowlist => {
            b.line("\n; net = allowlist: only the egress proxy on localhost, which enforces the");
            b.line("; host:port list outside the sandbox; trustd verifies TLS certificates.");
            b.line(&format!(
                "(allow network-outbound (remote ip \"localhost:{ALLOWLIST_PROXY_PORT}\"))"
            ));
            b.line("(allow mach-lookup (global-name \"com.apple.trustd.agent\"))");
        }
        NetMode::Host => {
            b.line("\n; net = host: the host's network, unrestricted (not a boundary; audited).");
            b.line("(allow network*)");
            b.line("(allow mach-lookup");
            b.line("  (global-name \"com.apple.dnssd.service\")");
            b.line("  (global-name \"com.apple.trustd.agent\"))");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::caps::EnvFilter;
    use crate::path::{PathSpec, PathVars, RelPath};
    use crate::profile::Limits;

    fn abs(s: &str) -> AbsPath {
        AbsPath::new(s).unwrap()
    }

    fn ctx(ws: &str) -> CompileContext {
        CompileContext {
            vars: PathVars {
                workspace: Some(abs(ws)),
                home: Some(abs("/Users/u")),
                tmpdir: Some(abs("/private/tmp/aiops-1")),
            },
            cwd: abs(ws),
            host_env: Default::default(),
            agentd: abs("/opt/aiops/libexec/aiops-agentd"),
        }
    }

    fn eff(ws: &str, net: NetMode) -> Effective {
        Effective {
            profile: "t".into(),
            source: crate::plan::PlanSource {
                profile_file: "/p/t.toml".into(),
                caps: serde_json::Value::Null,
                workspace: Some(abs(ws)),
                home: None,
                tmpdir: None,
            },
            unconfined: false,
            require: vec![],
            read: vec![abs("/usr"), abs("/opt/homebrew"), abs(ws)],
            write: vec![abs(ws)],
            exec: vec![abs("/usr"), abs(ws)],
            net,
            net_allow: vec![],
            net_allow_private: vec![],
            net_hosts: Default::default(),
            net_egress: Default::default(),
            env: EnvFilter::Names(vec![]),
            env_set: Default::default(),
            secrets: vec![],
            limits: Limits::default(),
            seccomp_deny: vec![],
            protected: vec![
                RelPath::parse(".git/hooks").unwrap(),
                RelPath::parse(".envrc").unwrap(),
            ],
            guard: crate::plan::GuardPlan {
                roots: vec![abs(ws)],
                ..crate::plan::GuardPlan::DEFAULT
            },
        }
    }

    /// The part of the text compiled from the capabilities (after the base).
    fn compiled_part(p: &SbplPlan) -> &str {
        p.text.strip_prefix(BASE).unwrap()
    }

    #[test]
    fn starts_from_the_deny_default_base() {
        let p = compile_sbpl(&eff("/w", NetMode::None), &ctx("/w")).unwrap();
        assert!(p.text.starts_with("(version 1)\n"));
        assert!(BASE.contains("\n(deny default)\n"));
        assert!(!p.text.contains("(allow default)"));
    }

    #[test]
    fn no_path_appears_in_the_text() {
        let p = compile_sbpl(
            &eff("/Users/u/work/ws", NetMode::Loopback),
            &ctx("/Users/u/work/ws"),
        )
        .unwrap();
        assert!(!p.params.is_empty());
        for (_, v) in &p.params {
            assert!(
                !compiled_part(&p).contains(v.as_str()),
                "{v} leaked into the text"
            );
        }
        assert!(!p.text.contains("/Users/u"));
        // Nothing compiled names a path: the only '/' are in comments.
        for line in compiled_part(&p)
            .lines()
            .filter(|l| !l.trim_start().starts_with(';'))
        {
            assert!(!line.contains('/'), "path-like text in {line:?}");
        }
    }

    #[test]
    fn params_are_stable_and_ordered() {
        let a = compile_sbpl(&eff("/w", NetMode::None), &ctx("/w")).unwrap();
        let b = compile_sbpl(&eff("/w", NetMode::None), &ctx("/w")).unwrap();
        assert_eq!(a, b);
        let names: Vec<&str> = a.params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "READ_0",
                "READ_1",
                "WRITE_0",
                "EXEC_0",
                "EXEC_1",
                "TMPDIR",
                "AGENTD",
                "PROTECT_0",
                "PROTECT_1"
            ]
        );
        assert_eq!(a.params[0], ("READ_0".into(), "/usr".into()));
        assert_eq!(a.params[7], ("PROTECT_0".into(), "/w/.git/hooks".into()));
        // Each parameter is referenced by the text and named once.
        for (k, _) in &a.params {
            assert!(a.text.contains(&format!("(param \"{k}\")")), "{k} unused");
        }
        // Declared in the order the text first uses them.
        let pos: Vec<usize> = a
            .params
            .iter()
            .map(|(k, _)| a.text.find(&format!("(param \"{k}\")")).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
    }

    #[test]
    fn a_hostile_path_cannot_inject_policy() {
        let evil = "/w/x\") (allow default) (allow file-write* (subpath \"/";
        let e = eff(evil, NetMode::None);
        let bad = compile_sbpl(&e, &ctx(evil)).unwrap();
        let good = compile_sbpl(&eff("/w", NetMode::None), &ctx("/w")).unwrap();
        // Same policy text whatever the path; the path is only a parameter value.
        assert_eq!(bad.text, good.text);
        assert!(bad
            .params
            .iter()
            .any(|(_, v)| *v == abs(evil).to_string() && v.contains("\") (allow default)")));
        assert!(!bad.text.contains("(allow default)"));
        let mut e = eff("/w", NetMode::None);
        e.profile = "x\n(allow default)".into();
        let p = compile_sbpl(&e, &ctx("/w")).unwrap();
        assert!(!p.text.contains("(allow default)"));
        let parenthesised = "/w/a)(b";
        let p = compile_sbpl(&eff(parenthesised, NetMode::None), &ctx(parenthesised)).unwrap();
        assert_eq!(p.text, good.text);
    }

    #[test]
    fn protected_denies_follow_every_file_allow() {
        // A workspace inside $TMPDIR: the TMPDIR allow must not reopen .git/hooks.
        let ws = "/private/tmp/aiops-1/ws";
        let p = compile_sbpl(&eff(ws, NetMode::None), &ctx(ws)).unwrap();
        let deny = p
            .text
            .find("(deny file-write* (subpath (param \"PROTECT_0\")))")
            .unwrap();
        let last_allow = p.text.rfind("(allow file-read* file-write*").unwrap();
        let agentd = p.text.find("(param \"AGENTD\")").unwrap();
        assert!(last_allow < deny && agentd < deny, "{}", p.text);
    }

    #[test]
    fn net_modes_compile_to_their_rules() {
        let text = |m| compiled_part(&compile_sbpl(&eff("/w", m), &ctx("/w")).unwrap()).to_string();
        assert!(!text(NetMode::None).contains("(allow network"));
        let lo = text(NetMode::Loopback);
        assert!(lo.contains("(allow network* (remote ip \"localhost:*\"))"));
        assert!(lo.contains("(local ip \"localhost:*\")"));
        let al = text(NetMode::Allowlist);
        assert!(al.contains(&format!("(remote ip \"localhost:{ALLOWLIST_PROXY_PORT}\")")));
        assert!(!al.contains("network*"));
        assert!(text(NetMode::Host).contains("(allow network*)\n"));
    }

    #[test]
    fn unconfined_allows_default_and_says_so() {
        let mut e = eff("/w", NetMode::Host);
        e.unconfined = true;
        let p = compile_sbpl(&e, &ctx("/w")).unwrap();
        assert!(p.text.starts_with("; unconfined"));
        assert!(p.text.ends_with("(version 1)\n(allow default)\n"));
        assert!(p.params.is_empty());
    }

    #[test]
    fn refuses_cwd_outside_the_allowed_paths() {
        let mut c = ctx("/w");
        c.cwd = abs("/elsewhere");
        let err = compile_sbpl(&eff("/w", NetMode::None), &c).unwrap_err();
        assert!(err.to_string().contains("/elsewhere"), "{err}");
    }

    #[test]
    fn compiles_from_a_profile_and_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "schema = 1\nname = \"p\"\ndescription = \"d\"\n[fs]\nread = [\"/usr\"]\nwrite = [\"$WORKSPACE\"]\n",
        )
        .unwrap();
        let prof = crate::ProfileLoader { search: vec![] }
            .load_path(&path)
            .unwrap();
        let node = NodeCaps {
            write_paths: Some(vec![PathSpec::parse("/etc").unwrap()]),
            ..Default::default()
        };
        assert!(matches!(
            compile_sbpl_for(&prof, &node, &ctx("/w")),
            Err(PolicyError::OutsideProfile { .. })
        ));
        let p = compile_sbpl_for(&prof, &NodeCaps::default(), &ctx("/w")).unwrap();
        assert!(p.sbpl.params.contains(&("WRITE_0".into(), "/w".into())));
        // The same steps as the Linux plan: environment, protected paths, limits.
        let eff = effective(&prof, &NodeCaps::default(), &ctx("/w").vars).unwrap();
        assert_eq!(p.env, build_env(&eff, &ctx("/w")));
        assert_eq!(p.protected, protected_paths(&eff));
        assert_eq!(p.run.timeout_ms, eff.limits.timeout.millis());
        // A profile that requires a Linux layer is refused on macOS, by the
        // check the Linux compile makes.
        std::fs::write(
            &path,
            "schema = 1\nname = \"p\"\ndescription = \"d\"\nrequire = [\"seccomp\"]\n[fs]\nread = [\"/usr\"]\nwrite = [\"$WORKSPACE\"]\n",
        )
        .unwrap();
        let linux_only = crate::ProfileLoader { search: vec![] }
            .load_path(&path)
            .unwrap();
        let p = compile_sbpl_for(&linux_only, &NodeCaps::default(), &ctx("/w")).unwrap();
        let mac = crate::HostFacts {
            os: crate::facts::Os::Macos,
            landlock_abi: 0,
            seccomp: false,
            userns: false,
            netns: false,
            cgroup_v2: false,
        };
        assert!(matches!(
            crate::compile::check_required_layers(&p.require, &mac),
            Err(PolicyError::Refused { .. })
        ));
    }
}
