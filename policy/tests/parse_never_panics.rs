//! The stable-toolchain stand-in for `fuzz/`: thousands of deterministic
//! pseudo-random mutations of the shipped profiles, of node capabilities and
//! of report frames go through the parsers (and, when they parse, through the
//! compilers). Any outcome is fine except a panic.
#![allow(clippy::unwrap_used)]
mod common;

#[cfg(feature = "full")]
use aiops_policy::sbpl::compile_sbpl_for;
use aiops_policy::{
    compile, AbsPath, CompileContext, HostFacts, NodeCaps, PathVars, ProfileLoader,
};
use aiops_proto::Report;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

const PROFILE_MUTATIONS: usize = 3000;
const NODE_MUTATIONS: usize = 1500;
const REPORT_MUTATIONS: usize = 1500;

/// splitmix64: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            // The remainder is below n, which is a usize.
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
}

/// Fragments that reach interesting parser states: TOML structure, units,
/// variables, path tricks, layer names, huge and odd numbers, non-ASCII.
const TOKENS: &[&str] = &[
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    ",",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "#",
    "\n",
    ".",
    "\\",
    "\\u0000",
    "[fs]",
    "[net]",
    "[env]",
    "[limits]",
    "[protected]",
    "[[seccomp.deny]]",
    "[fs.read]",
    "read = [\"/\"]",
    "write = [\"$WORKSPACE/..\"]",
    "exec = []",
    "mode = \"host\"",
    "unconfined = true",
    "extends = \"restrictive\"",
    "extends = \"agent\"",
    "schema = 1",
    "schema = 2",
    "name = \"x\"",
    "$HOME",
    "$WORKSPACE",
    "$TMPDIR",
    "$NOPE",
    "/..",
    "/./",
    "//",
    "/proc",
    "/dev/shm",
    "/.aiops",
    "landlock>=",
    "landlock>=0",
    "landlock>=255",
    "landlock>=4",
    "seccomp",
    "netns",
    "30m",
    "0s",
    "1d",
    "99999999999999999999",
    "18446744073709551616TiB",
    "-1",
    "1e400",
    "inf",
    "nan",
    "0x10",
    "1_000",
    "2h",
    "1GB",
    "16MiB",
    "*",
    "LC_*",
    "*.example.com:443",
    "[::1]:0",
    ":",
    "65536",
    "é",
    "\u{202e}",
    "\u{fffd}",
    "𝕏",
    "\t",
    "\r\n",
    " ",
    "syscall = \"bpf\"",
    "reason = \"\"",
    "reason = \"because it is so\"",
    "unprotect = [{ path = \".envrc\" }]",
    "set = { A = \"b\" }",
    "secrets = [\"OPENAI_API_KEY\"]",
];

fn char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One to four random edits of `src`; the result is always valid UTF-8.
fn mutate(src: &str, rng: &mut Rng) -> String {
    let mut s = src.to_string();
    for _ in 0..=rng.below(4) {
        let at = char_boundary(&s, rng.below(s.len() + 1));
        match rng.below(8) {
            0 | 1 => s.insert_str(at, rng.pick(TOKENS)),
            2 => {
                let end = char_boundary(&s, at + rng.below(24));
                s.replace_range(at..end, "");
            }
            3 => {
                let end = char_boundary(&s, at + rng.below(40));
                let chunk = s[at..end].to_string();
                s.insert_str(end, &chunk);
            }
            4 => s.truncate(at),
            5 => {
                // Swap two lines.
                let mut lines: Vec<&str> = s.lines().collect();
                if lines.len() > 1 {
                    let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                    lines.swap(a, b);
                }
                s = lines.join("\n");
            }
            6 => {
                // Replace one character with a token.
                let end = char_boundary(&s, at + 1);
                let end = if end == at && at < s.len() {
                    char_boundary(&s, at + 4)
                } else {
                    end
                };
                s.replace_range(at..end, rng.pick(TOKENS));
            }
            _ => {
                // Flip a digit or a quote somewhere on the line.
                let end = char_boundary(&s, at + 1);
                let c = s[at..end].to_string();
                let r = match c.as_str() {
                    "\"" => "'",
                    "1" => "0",
                    "=" => ":",
                    "]" => "",
                    _ => "9",
                };
                s.replace_range(at..end, r);
            }
        }
    }
    s
}

fn ctx() -> CompileContext {
    CompileContext {
        vars: PathVars {
            workspace: Some(AbsPath::new("/work/ws").unwrap()),
            home: Some(AbsPath::new("/home/u").unwrap()),
            tmpdir: Some(AbsPath::new("/tmp").unwrap()),
        },
        cwd: AbsPath::new("/work/ws").unwrap(),
        host_env: [("HOME", "/home/u"), ("PATH", "/usr/bin")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        agentd: AbsPath::new("/usr/libexec/aiops/aiops-agentd").unwrap(),
    }
}

/// Run `f` on `input`; on a panic, fail showing the input that caused it.
fn no_panic(what: &str, input: &str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        panic!("{what} panicked on input:\n-----\n{input}\n-----");
    }
}

#[test]
fn mutated_profiles_never_panic_the_parser_or_compilers() {
    let shipped = common::shipped_profiles();
    let sources: Vec<(String, String)> = shipped
        .iter()
        .map(|(n, p)| (n.clone(), std::fs::read_to_string(p).unwrap()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let loader = ProfileLoader {
        search: vec![dir.path().to_path_buf(), common::profiles_dir()],
    };
    let ctx = ctx();
    let mut rng = Rng(0x5EED_0001);
    let (mut parsed, mut compiled) = (0, 0);
    for i in 0..PROFILE_MUTATIONS {
        let (name, src) = &sources[i % sources.len()];
        let m = mutate(src, &mut rng);
        let file = Path::new("/profiles").join(format!("{name}.toml"));
        no_panic("parse_profile", &m, || {
            if aiops_policy::profile::parse_profile(&file, &m).is_ok() {
                parsed += 1;
            }
        });
        // Every tenth input that still parses is also resolved and compiled.
        if i % 10 == 0 && aiops_policy::profile::parse_profile(&file, &m).is_ok() {
            let path = dir.path().join(format!("{name}.toml"));
            std::fs::write(&path, &m).unwrap();
            no_panic("load + compile", &m, || {
                if let Ok(p) = loader.load_path(&path) {
                    let node = NodeCaps::default();
                    let _ = compile(&p, &node, &HostFacts::linux(7), &ctx);
                    let _ = compile(&p, &node, &HostFacts::linux(3), &ctx);
                    #[cfg(feature = "full")]
                    let _ = compile_sbpl_for(&p, &node, &ctx);
                    compiled += 1;
                }
            });
            std::fs::remove_file(&path).unwrap();
        }
    }
    // The mutations must not be so wild that nothing parses, or this test
    // would only exercise the TOML lexer.
    eprintln!("{parsed} of {PROFILE_MUTATIONS} mutated profiles parsed, {compiled} compiled");
    assert!(
        parsed > PROFILE_MUTATIONS / 20,
        "only {parsed} mutations parsed"
    );
    assert!(compiled > 10, "only {compiled} mutations compiled");
}

#[test]
fn mutated_node_caps_never_panic() {
    let profile = ProfileLoader {
        search: vec![common::profiles_dir()],
    }
    .load("agent")
    .unwrap();
    let seed = "net = \"allowlist\"\nnet_allow = [\"api.openai.com:443\"]\nread_paths = [\"/usr\", \"$WORKSPACE\"]\n\
                write_paths = [\"$WORKSPACE/src\"]\nexec_paths = [\"/usr\"]\nenv = [\"PATH\", \"LC_ALL\"]\n\
                secrets = [\"OPENAI_API_KEY\"]\n[limits]\ntimeout = \"1h\"\nmemory = \"2GiB\"\npids = 64\n";
    let ctx = ctx();
    let mut rng = Rng(0x5EED_0002);
    let mut parsed = 0;
    for _ in 0..NODE_MUTATIONS {
        let m = mutate(seed, &mut rng);
        no_panic("node caps", &m, || {
            if let Ok(node) = aiops_policy::error::from_toml::<NodeCaps>(Path::new("node.toml"), &m)
            {
                parsed += 1;
                let _ = compile(&profile, &node, &HostFacts::linux(7), &ctx);
                #[cfg(feature = "full")]
                let _ = compile_sbpl_for(&profile, &node, &ctx);
            }
        });
    }
    eprintln!("{parsed} of {NODE_MUTATIONS} mutated node caps parsed");
    assert!(
        parsed > NODE_MUTATIONS / 50,
        "only {parsed} mutations parsed"
    );
}

#[test]
fn mutated_report_frames_never_panic() {
    let seeds = [
        r#"{"kind":"started","pid":42}"#,
        r#"{"kind":"output","stream":"stdout","bytes":1024}"#,
        r#"{"kind":"setup_failed","step":"landlock","errno":38,"message":"x"}"#,
    ];
    let mut rng = Rng(0x5EED_0003);
    for i in 0..REPORT_MUTATIONS {
        let m = mutate(seeds[i % seeds.len()], &mut rng);
        no_panic("Report::decode", &m, || {
            let _ = Report::decode(m.as_bytes());
        });
        // Raw bytes too, not only UTF-8.
        let mut b = m.clone().into_bytes();
        if !b.is_empty() {
            let at = rng.below(b.len());
            b[at] = rng.next().to_le_bytes()[0];
        }
        no_panic("Report::decode (bytes)", &m, || {
            let _ = Report::decode(&b);
        });
    }
    for seed in seeds {
        assert!(Report::decode(seed.as_bytes()).is_ok(), "{seed}");
    }
}
