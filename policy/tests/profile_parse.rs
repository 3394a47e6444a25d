//! Every class of malformed profile gives one clear error naming the file,
//! line, column and field; node capabilities above the profile are refused
//! naming the field and entry.
#![allow(clippy::unwrap_used)]
mod common;

use aiops_policy::caps::effective;
use aiops_policy::{AbsPath, NodeCaps, PathVars, PolicyError, Profile, ProfileLoader};
use std::path::Path;

const HEAD: &str = "schema = 1\nname = \"p\"\ndescription = \"d\"\n";

/// Load `src` as profile `name` from a fresh directory (plus any `extra` files).
fn load(name: &str, src: &str, extra: &[(&str, &str)]) -> Result<Profile, PolicyError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{name}.toml")), src).unwrap();
    for (n, s) in extra {
        std::fs::write(dir.path().join(format!("{n}.toml")), s).unwrap();
    }
    ProfileLoader {
        search: vec![dir.path().to_path_buf()],
    }
    .load(name)
}

/// Expect a `Parse` error at `line:column` on `field` whose message holds `needle`.
#[track_caller]
fn parse_err(body: &str, line: usize, column: usize, field: &str, needle: &str) {
    let src = format!("{HEAD}{body}");
    match load("p", &src, &[]) {
        Err(PolicyError::Parse {
            file,
            line: l,
            column: c,
            field: f,
            message,
        }) => {
            assert!(file.ends_with("p.toml"), "{}", file.display());
            assert_eq!((l, c, f.as_str()), (line, column, field), "{message}");
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            // One line, position first, so editors can jump to it.
            let shown = PolicyError::Parse {
                file,
                line: l,
                column: c,
                field: f,
                message,
            }
            .to_string();
            assert!(
                shown.contains(&format!("p.toml:{line}:{column}: {field}: ")),
                "{shown}"
            );
            assert!(!shown.contains('\n'), "{shown}");
        }
        other => panic!("expected a parse error for\n{src}\ngot {other:?}"),
    }
}

#[test]
fn refuses_toml_syntax_errors() {
    parse_err("[fs\nread = []\n", 4, 4, "(document)", "unclosed table");
}

#[test]
fn refuses_unknown_top_level_key_naming_it() {
    parse_err("bogus = 1\n", 4, 1, "bogus", "unknown field `bogus`");
}

#[test]
fn refuses_unknown_nested_keys_naming_them() {
    parse_err(
        "[fs]\nread = [\"/usr\"]\nreed = [\"/x\"]\n",
        6,
        1,
        "fs.reed",
        "unknown field `reed`",
    );
    parse_err(
        "[[seccomp.deny]]\nsyscall = \"bpf\"\nreason = \"loads kernel code\"\nextra = 1\n",
        7,
        1,
        "seccomp.deny[0].extra",
        "unknown field `extra`",
    );
}

#[test]
fn refuses_duplicate_keys_naming_them() {
    parse_err("name = \"p\"\n", 4, 1, "name", "duplicate key `name`");
    parse_err(
        "[fs]\nread = []\n[fs]\nwrite = []\n",
        6,
        2,
        "fs",
        "duplicate key `fs`",
    );
}

#[test]
fn refuses_wrong_types() {
    parse_err(
        "[limits]\npids = \"many\"\n",
        5,
        8,
        "limits.pids",
        "invalid type: string \"many\", expected u32",
    );
    parse_err(
        "[fs]\nread = \"/usr\"\n",
        5,
        8,
        "fs.read",
        "expected a sequence",
    );
    parse_err(
        "unconfined = \"yes\"\n",
        4,
        14,
        "unconfined",
        "expected a boolean",
    );
}

#[test]
fn refuses_missing_and_unknown_units() {
    parse_err(
        "[limits]\ntimeout = \"30\"\n",
        5,
        11,
        "limits.timeout",
        "missing unit",
    );
    parse_err(
        "[limits]\ntimeout = 30\n",
        5,
        11,
        "limits.timeout",
        "expected a string",
    );
    parse_err(
        "[limits]\nmemory = \"8 GiBs\"\n",
        5,
        10,
        "limits.memory",
        "unknown unit \"GiBs\"",
    );
    parse_err(
        "[limits]\ncpu = \"2 weeks\"\n",
        5,
        7,
        "limits.cpu",
        "unknown unit \"weeks\"",
    );
}

#[test]
fn refuses_bad_paths() {
    parse_err(
        "[fs]\nread = [\"/usr\", \"$HOMEDIR/x\"]\n",
        5,
        8,
        "fs.read[1]",
        "unknown variable $HOMEDIR",
    );
    parse_err(
        "[fs]\nwrite = [\"work\"]\n",
        5,
        9,
        "fs.write[0]",
        "\"work\" is relative",
    );
    parse_err(
        "[fs]\nexec = [\"/usr/../etc\"]\n",
        5,
        8,
        "fs.exec[0]",
        "contains `..`",
    );
    parse_err(
        "[protected]\nadd = [\"../outside\"]\n",
        5,
        7,
        "protected.add[0]",
        "contains `..`",
    );
}

#[test]
fn refuses_unknown_syscall_names() {
    parse_err(
        "[[seccomp.deny]]\nsyscall = \"io_uring_setupp\"\nreason = \"performs I/O unseen\"\n",
        5,
        11,
        "seccomp.deny[0].syscall",
        "unknown syscall \"io_uring_setupp\"",
    );
}

#[test]
fn refuses_missing_and_empty_reasons() {
    parse_err(
        "[[seccomp.deny]]\nsyscall = \"bpf\"\n",
        4,
        1,
        "seccomp.deny[0]",
        "missing field `reason`",
    );
    parse_err(
        "[[seccomp.deny]]\nsyscall = \"bpf\"\nreason = \"\"\n",
        6,
        10,
        "seccomp.deny[0].reason",
        "reason must say why",
    );
    parse_err(
        "[protected]\nunprotect = [{ path = \".envrc\" }]\n",
        5,
        14,
        "protected.unprotect[0]",
        "missing field `reason`",
    );
}

#[test]
fn refuses_other_schema_versions_and_a_missing_schema() {
    let e = load("p", "schema = 2\nname = \"p\"\ndescription = \"d\"\n", &[]).unwrap_err();
    assert_eq!(
        e.to_string().rsplit_once("p.toml:").unwrap().1,
        "1:10: schema: unsupported schema version 2; this aiops reads schema = 1"
    );
    let e = load("p", "name = \"p\"\ndescription = \"d\"\n", &[]).unwrap_err();
    assert_eq!(
        e.to_string().rsplit_once("p.toml:").unwrap().1,
        "1:1: (document): missing field `schema`"
    );
}

#[test]
fn refuses_unknown_layers_and_landlock_abis() {
    parse_err(
        "require = [\"seccomp\", \"apparmor\"]\n",
        4,
        11,
        "require[1]",
        "unknown layer \"apparmor\"",
    );
    parse_err(
        "require = [\"landlock>=99\"]\n",
        4,
        11,
        "require[0]",
        "Landlock ABI 1 to 7",
    );
    parse_err(
        "require = [\"landlock>=x\"]\n",
        4,
        11,
        "require[0]",
        "expected landlock>=N",
    );
}

#[test]
fn refuses_bad_net_entries() {
    parse_err(
        "[net]\nmode = \"allowlist\"\nallow = [\"api.example.com\"]\n",
        6,
        9,
        "net.allow[0]",
        "the port is required",
    );
    parse_err(
        "[net]\nallow = [\"a.com:99999\"]\n",
        5,
        9,
        "net.allow[0]",
        "not a number 1-65535",
    );
    parse_err(
        "[net]\nallow = [\"a.*.com:443\"]\n",
        5,
        9,
        "net.allow[0]",
        "wildcard only as a leading",
    );
    parse_err(
        "[net]\nmode = \"internet\"\n",
        5,
        8,
        "net.mode",
        "unknown variant `internet`",
    );
}

#[test]
fn refuses_an_env_glob_that_passes_everything() {
    parse_err(
        "[env]\nallow = [\"HOME\", \"*\"]\n",
        5,
        9,
        "env.allow[1]",
        "whole host environment",
    );
    parse_err(
        "[env]\nset = { \"1BAD\" = \"x\" }\n",
        5,
        9,
        "env.set.1BAD",
        "not an environment variable name",
    );
}

#[test]
fn refuses_extends_cycles() {
    let a = "schema = 1\nname = \"a\"\ndescription = \"d\"\nextends = \"b\"\n";
    let b = "schema = 1\nname = \"b\"\ndescription = \"d\"\nextends = \"a\"\n";
    match load("a", a, &[("b", b)]) {
        Err(e @ PolicyError::ExtendsCycle { .. }) => {
            assert!(
                e.to_string()
                    .ends_with("b.toml: extends cycle: a -> b -> a"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    let s = "schema = 1\nname = \"s\"\ndescription = \"d\"\nextends = \"s\"\n";
    match load("s", s, &[]) {
        Err(e @ PolicyError::ExtendsCycle { .. }) => {
            assert!(
                e.to_string().ends_with("s.toml: extends cycle: s -> s"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn refuses_extends_to_a_missing_profile() {
    match load("p", &format!("{HEAD}extends = \"nosuch\"\n"), &[]) {
        Err(e @ PolicyError::ProfileNotFound { .. }) => {
            assert!(
                e.to_string()
                    .starts_with("profile \"nosuch\" not found (searched "),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn refuses_a_name_that_differs_from_the_file_name() {
    match load("other", HEAD, &[]) {
        Err(e @ PolicyError::NameMismatch { .. }) => assert!(
            e.to_string()
                .ends_with("other.toml: profile name \"p\" does not match file name \"other\""),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_shipped_profile_refuses_an_appended_unknown_key() {
    for (name, path) in common::shipped_profiles() {
        let mut src = std::fs::read_to_string(&path).unwrap();
        src.push_str("\nbogus_key = 1\n");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{name}.toml")), &src).unwrap();
        let loader = ProfileLoader {
            search: vec![dir.path().to_path_buf(), common::profiles_dir()],
        };
        match loader.load(&name) {
            Err(PolicyError::Parse {
                file,
                line,
                field,
                message,
                ..
            }) => {
                assert_eq!(file, dir.path().join(format!("{name}.toml")));
                assert_eq!(line, src.lines().count(), "{name}: {message}");
                // The key lands in whatever table the file ends with.
                assert!(
                    field == "bogus_key" || field.ends_with(".bogus_key"),
                    "{name}: {field}"
                );
                assert!(
                    message.contains("unknown field `bogus_key`"),
                    "{name}: {message}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
        // Control: the file as shipped loads.
        loader.load(path.to_str().unwrap()).unwrap();
    }
}

// ---- node capabilities against a profile ----

fn shipped(name: &str) -> Profile {
    ProfileLoader {
        search: vec![common::profiles_dir()],
    }
    .load(name)
    .unwrap()
}

fn vars() -> PathVars {
    PathVars {
        workspace: Some(AbsPath::new("/work/ws").unwrap()),
        home: Some(AbsPath::new("/home/u").unwrap()),
        tmpdir: Some(AbsPath::new("/tmp").unwrap()),
    }
}

fn node(toml_src: &str) -> NodeCaps {
    aiops_policy::error::from_toml(Path::new("node.toml"), toml_src).unwrap()
}

#[track_caller]
fn refused(profile: &str, caps: &str, expected: &str) {
    match effective(&shipped(profile), &node(caps), &vars()) {
        Err(e @ PolicyError::OutsideProfile { .. }) => assert_eq!(e.to_string(), expected),
        other => panic!("{caps}: {other:?}"),
    }
}

#[test]
fn refuses_a_write_path_outside_the_profile() {
    refused(
        "restrictive",
        "write_paths = [\"/etc\"]",
        "write_paths[0] \"/etc\": outside profile \"restrictive\"",
    );
    // Inside is fine, and narrows the plan to exactly that path.
    let eff = effective(
        &shipped("restrictive"),
        &node("write_paths = [\"$WORKSPACE/src\"]"),
        &vars(),
    )
    .unwrap();
    assert_eq!(eff.write, vec![AbsPath::new("/work/ws/src").unwrap()]);
}

#[test]
fn refuses_a_net_mode_above_the_profile() {
    refused(
        "restrictive",
        "net = \"host\"",
        "net \"host\": outside profile \"restrictive\"",
    );
    refused(
        "agent",
        "net_allow = [\"evil.example.com:443\"]",
        "net_allow[0] \"evil.example.com:443\": outside profile \"agent\"",
    );
}

#[test]
fn refuses_a_secret_the_profile_does_not_list() {
    refused(
        "agent",
        "secrets = [\"ANTHROPIC_API_KEY\", \"AWS_SECRET_ACCESS_KEY\"]",
        "secrets[1] \"AWS_SECRET_ACCESS_KEY\": outside profile \"agent\"",
    );
}

#[test]
fn refuses_a_limit_above_the_profile() {
    refused(
        "restrictive",
        "[limits]\ntimeout = \"3h\"",
        "limits.timeout 3h > 30m: outside profile \"restrictive\"",
    );
    refused(
        "readonly",
        "[limits]\nmemory = \"64GiB\"",
        "limits.memory 64GiB > 8GiB: outside profile \"readonly\"",
    );
}

#[test]
fn refuses_an_env_name_the_allow_list_does_not_match() {
    refused(
        "restrictive",
        "env = [\"LC_ALL\", \"SECRET_TOKEN\"]",
        "env[1] \"SECRET_TOKEN\": outside profile \"restrictive\"",
    );
}

#[test]
fn node_caps_files_are_strict_too() {
    let e = aiops_policy::error::from_toml::<NodeCaps>(
        Path::new("node.toml"),
        "net = \"none\"\nwrite_path = []\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string().split_once(": ").unwrap().1,
        "write_path: unknown field `write_path`, expected one of `net`, `net_allow`, `read_paths`, `write_paths`, `exec_paths`, `env`, `secrets`, `limits`"
    );
}

/// 0 would mean "no limit" to tmpfs; a node may only shrink the tmpfs, and
/// an unset size follows the (node's) memory: memory / 4, at most 1GiB.
#[test]
fn tmpfs_limits_are_positive_narrowed_and_derived_from_memory() {
    parse_err(
        "[limits]\ntmpfs_inodes = 0\n",
        5,
        16,
        "limits.tmpfs_inodes",
        "nonzero",
    );
    parse_err(
        "[limits]\ntmpfs = \"0MiB\"\n",
        5,
        9,
        "limits.tmpfs",
        "greater than zero",
    );
    refused(
        "restrictive",
        "[limits]\ntmpfs = \"2GiB\"",
        "limits.tmpfs 2GiB > 1GiB: outside profile \"restrictive\"",
    );
    refused(
        "restrictive",
        "[limits]\ntmpfs_inodes = 100000",
        "limits.tmpfs_inodes 100000 > 65536: outside profile \"restrictive\"",
    );
    let eff = |caps: &str| effective(&shipped("restrictive"), &node(caps), &vars()).unwrap();
    assert_eq!(eff("").limits.tmpfs_bytes(), 1 << 30);
    assert_eq!(
        eff("[limits]\nmemory = \"512MiB\"").limits.tmpfs_bytes(),
        128 << 20
    );
    let small = eff("[limits]\ntmpfs = \"16MiB\"\ntmpfs_inodes = 64");
    assert_eq!(small.limits.tmpfs_bytes(), 16 << 20);
    assert_eq!(small.limits.tmpfs_inodes.get(), 64);
}
