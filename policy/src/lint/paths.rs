//! Lexical classification of path-like words: where a word points, whether
//! it is broad, sensitive, or a system path. Nothing touches the filesystem.
use crate::AbsPath;
use std::path::{Path, PathBuf};

/// Where a word points, after `~`/`$HOME` and `.`/`..` are resolved lexically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Loc {
    Abs(Vec<String>),
    /// Under the (unknown) home directory.
    Home(Vec<String>),
    /// Relative to the working directory; `ups` counts `..` above it.
    Rel {
        ups: usize,
        comps: Vec<String>,
    },
    /// Depends on a variable or substitution the lint cannot resolve.
    Unresolved,
}

fn push_normal(comps: &mut Vec<String>, ups: &mut usize, rest: &str) {
    for c in rest.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if comps.pop().is_none() {
                    *ups += 1;
                }
            }
            c => comps.push(c.to_string()),
        }
    }
}

fn strip_home(v: &str) -> Option<&str> {
    ["~", "$HOME", "${HOME}"]
        .iter()
        .find_map(|p| v.strip_prefix(p))
        .filter(|r| r.is_empty() || r.starts_with('/'))
}

pub(crate) fn locate_str(v: &str, dynamic: bool) -> Loc {
    let (mut comps, mut ups) = (Vec::new(), 0);
    if let Some(rest) = strip_home(v).filter(|_| dynamic || v.starts_with('~')) {
        push_normal(&mut comps, &mut ups, rest);
        // `~/../..` climbs out of home to somewhere unknown.
        return if ups > 0 {
            Loc::Unresolved
        } else {
            Loc::Home(comps)
        };
    }
    if dynamic && (v.contains('$') || v.contains('`')) {
        return Loc::Unresolved;
    }
    if let Some(user_rest) = v.strip_prefix('~') {
        // `~user/x`: approximate as /home/user (or /root).
        let (user, rest) = user_rest.split_once('/').unwrap_or((user_rest, ""));
        let base = if user == "root" {
            "/root".into()
        } else {
            format!("/home/{user}")
        };
        push_normal(&mut comps, &mut ups, &format!("{base}/{rest}"));
        return Loc::Abs(comps);
    }
    push_normal(&mut comps, &mut ups, v);
    if v.starts_with('/') {
        Loc::Abs(comps) // `..` above `/` stays at `/`
    } else {
        Loc::Rel { ups, comps }
    }
}

/// The absolute path a location names, given the working directory.
pub(crate) fn absolute(loc: &Loc, cwd: Option<&AbsPath>) -> Option<PathBuf> {
    match loc {
        Loc::Abs(c) => Some(Path::new("/").join(c.join("/"))),
        Loc::Rel { ups, comps } => {
            let mut p = cwd?.as_path().to_path_buf();
            for _ in 0..*ups {
                p.pop();
            }
            Some(p.join(comps.join("/")))
        }
        Loc::Home(_) | Loc::Unresolved => None,
    }
}

fn is_glob_all(comps: &[String]) -> bool {
    comps.is_empty() || (comps.len() == 1 && matches!(comps[0].as_str(), "*" | ".*" | "*.*"))
}

/// `/`, `/usr`, `~`, `*`, `.`, `..`, `$X`: a target whose removal loses far
/// more than one build directory.
pub(crate) fn is_broad(loc: &Loc) -> bool {
    match loc {
        Loc::Abs(c) => c.len() <= 1,
        Loc::Home(c) => is_glob_all(c),
        Loc::Rel { comps, .. } => is_glob_all(comps),
        Loc::Unresolved => true,
    }
}

/// Outside the workspace (assumed to be the working directory).
pub(crate) fn is_outside(loc: &Loc, workspace: Option<&AbsPath>) -> bool {
    match (loc, workspace) {
        (Loc::Rel { ups: 0, .. }, _) => false,
        (Loc::Home(_) | Loc::Unresolved, _) | (_, None) => true,
        (loc, Some(ws)) => absolute(loc, Some(ws)).is_none_or(|p| !p.starts_with(ws.as_path())),
    }
}

/// Files under a home directory that hold credentials.
const HOME_SECRETS: &[&[&str]] = &[
    &[".ssh"],
    &[".aws"],
    &[".config", "gcloud"],
    &[".kube"],
    &[".docker", "config.json"],
    &[".netrc"],
    &[".git-credentials"],
    &[".gnupg"],
];

/// Absolute locations that hold secrets or reach the host kernel/runtime;
/// `*` matches any one component.
const HOST_SENSITIVE: &[&[&str]] = &[
    &["etc", "shadow"],
    &["etc", "gshadow"],
    &["etc", "sudoers"],
    &["etc", "sudoers.d"],
    &["var", "run", "docker.sock"],
    &["run", "docker.sock"],
    &["run", "containerd"],
    &["var", "run", "containerd"],
    &["proc", "*", "root"],
    &["proc", "*", "mem"],
    &["proc", "*", "environ"],
    &["proc", "sys", "kernel"],
    &["sys", "kernel"],
];

fn under(comps: &[String], pattern: &[&str]) -> bool {
    comps.len() >= pattern.len() && pattern.iter().zip(comps).all(|(p, c)| *p == "*" || p == c)
}

/// What sensitive location a word names, if any.
pub(crate) fn sensitive(loc: &Loc) -> Option<&'static str> {
    let home_rest = match loc {
        Loc::Home(c) => Some(c.as_slice()),
        Loc::Abs(c) if c.first().is_some_and(|r| r == "root") => Some(&c[1..]),
        Loc::Abs(c) if c.first().is_some_and(|h| h == "home") && c.len() >= 2 => Some(&c[2..]),
        _ => None,
    };
    if let Some(rest) = home_rest {
        if HOME_SECRETS.iter().any(|p| under(rest, p)) {
            return Some("credentials under a home directory");
        }
    }
    match loc {
        Loc::Abs(c) if HOST_SENSITIVE.iter().any(|p| under(c, p)) => {
            Some("a host secret, a container runtime socket or a kernel interface")
        }
        _ => None,
    }
}

/// `/dev/tcp/...` and `/dev/udp/...`: bash opens a socket instead of a file.
pub(crate) fn is_dev_net(loc: &Loc) -> bool {
    matches!(loc, Loc::Abs(c) if c.len() >= 2 && c[0] == "dev" && (c[1] == "tcp" || c[1] == "udp"))
}

/// System files and block devices whose truncation breaks the host.
pub(crate) fn is_system(loc: &Loc) -> bool {
    let Loc::Abs(c) = loc else { return false };
    match c.first().map(String::as_str) {
        Some("etc" | "usr" | "boot" | "bin" | "sbin" | "lib" | "lib32" | "lib64") => true,
        Some("dev") => c.get(1).is_some_and(|d| {
            [
                "sd", "hd", "vd", "xvd", "nvme", "mmcblk", "dm-", "mapper", "md", "loop",
            ]
            .iter()
            .any(|p| d.starts_with(p))
        }),
        _ => false,
    }
}

/// Device files every jail has; naming them is not an escape.
pub(crate) fn is_harmless_device(loc: &Loc) -> bool {
    let Loc::Abs(c) = loc else { return false };
    let c: Vec<&str> = c.iter().map(String::as_str).collect();
    matches!(
        c.as_slice(),
        [
            "dev",
            "null" | "zero" | "full" | "random" | "urandom" | "tty" | "stdin" | "stdout" | "stderr"
        ] | ["dev", "fd", _]
    )
}

/// The path-like parts of a word: itself, or what follows `=` (`of=/dev/sda`,
/// `--file=/etc/shadow`): absolute, home-relative, or with a `/` (which a
/// `cd` may have moved outside the workspace). URLs are not paths.
pub(crate) fn candidates(v: &str) -> impl Iterator<Item = &str> {
    let after_eq = v.split_once('=').map(|(_, r)| r);
    std::iter::once(v).chain(after_eq).filter(|s| {
        s.starts_with('/')
            || s.starts_with('~')
            || (s.contains('/') && !s.contains("://"))
            || *s == ".."
            || strip_home(s).is_some()
    })
}
