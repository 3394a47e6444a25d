//! Command-specific rules, keyed by the command name after wrappers.
use super::parse::Word;
use super::paths::{self, Loc};
use super::{infra, name, skip_options, FindingKind, Linter};

use FindingKind::{Destructive, Escape};

/// Lint one command (`name` is `cmd`'s basename) with its arguments.
pub(super) fn command(l: &mut Linter, name: &str, cmd: &Word, args: &[Word], depth: usize) {
    match name {
        "rm" => rm(l, args),
        "git" => infra::git(l, args),
        "kubectl" | "oc" => {
            let valued = [
                "-n",
                "--namespace",
                "--context",
                "--kubeconfig",
                "--cluster",
                "--user",
                "-s",
                "--server",
                "--token",
            ];
            if let Some(w) = positional(args, &valued, 0).filter(|w| w.value == "delete") {
                l.push(
                    Destructive,
                    "kubectl_delete",
                    w,
                    format!("`{name} delete` removes cluster resources"),
                );
            }
        }
        "terraform" | "tofu" => infra::terraform(l, name, args),
        "helm" => {
            let valued = ["-n", "--namespace", "--kube-context", "--kubeconfig"];
            if let Some(w) = positional(args, &valued, 0)
                .filter(|w| matches!(w.value.as_str(), "uninstall" | "delete" | "del" | "un"))
            {
                l.push(
                    Destructive,
                    "helm_uninstall",
                    w,
                    "`helm uninstall` removes a release from the cluster".into(),
                );
            }
        }
        "docker" | "podman" => infra::docker(l, name, args),
        n if n.starts_with("mkfs") || n == "mke2fs" => {
            l.push(
                Destructive,
                "mkfs",
                cmd,
                format!("`{n}` formats a filesystem"),
            );
        }
        "dd" => {
            for w in args.iter().filter(|w| w.value.starts_with("of=")) {
                l.push(
                    Destructive,
                    "dd_output",
                    w,
                    format!("`dd {}` overwrites its output in place", w.value),
                );
            }
        }
        "shred" => l.push(
            Destructive,
            "shred",
            cmd,
            "`shred` overwrites files beyond recovery".into(),
        ),
        "wipefs" => l.push(
            Destructive,
            "wipefs",
            cmd,
            "`wipefs` erases filesystem signatures".into(),
        ),
        "chmod" | "chown" | "chgrp" => recursive_permissions(l, name, args),
        "truncate" => {
            let valued = ["-s", "--size", "-r", "--reference"];
            for w in &args[skip_options(args, &valued)..] {
                if paths::is_system(&l.locate(w)) {
                    l.push(
                        Destructive,
                        "truncate_system_path",
                        w,
                        format!("`truncate` of the system path {}", w.value),
                    );
                }
            }
        }
        "find" => find(l, args, depth),
        "psql" | "mysql" | "mariadb" | "sqlite3" => sql(l, name, args),
        "nsenter" | "unshare" | "setns" => {
            l.push(
                Escape,
                "namespace_escape",
                cmd,
                format!("`{name}` enters or creates namespaces"),
            );
        }
        "mount" => l.push(
            Escape,
            "mount",
            cmd,
            "`mount` changes the filesystem tree".into(),
        ),
        "chroot" | "pivot_root" => l.push(
            Escape,
            "chroot",
            cmd,
            format!("`{name}` changes the root directory"),
        ),
        "capsh" => l.push(
            Escape,
            "capsh",
            cmd,
            "`capsh` manipulates process capabilities".into(),
        ),
        "insmod" | "modprobe" | "rmmod" => {
            l.push(
                Escape,
                "kernel_module",
                cmd,
                format!("`{name}` changes the host kernel's modules"),
            );
        }
        _ => {}
    }
}

/// Index of the `nth` operand, skipping options and the values of `valued` ones.
pub(super) fn positional_index(args: &[Word], valued: &[&str], nth: usize) -> Option<usize> {
    let mut seen = 0;
    let mut i = 0;
    while let Some(w) = args.get(i) {
        if w.value.starts_with('-') {
            i += if valued.contains(&w.value.as_str()) {
                2
            } else {
                1
            };
            continue;
        }
        if seen == nth {
            return Some(i);
        }
        seen += 1;
        i += 1;
    }
    None
}

pub(super) fn positional<'w>(args: &'w [Word], valued: &[&str], nth: usize) -> Option<&'w Word> {
    positional_index(args, valued, nth).map(|i| &args[i])
}

/// Short-option clusters (`-rf`) and long options of a command.
pub(super) fn has_flag(args: &[Word], short: &[char], long: &[&str]) -> Option<usize> {
    args.iter().take_while(|w| w.value != "--").position(|w| {
        let v = w.value.as_str();
        long.contains(&v)
            || (v.starts_with('-')
                && !v.starts_with("--")
                && v[1..].chars().any(|c| short.contains(&c)))
    })
}

pub(super) fn operands(args: &[Word]) -> impl Iterator<Item = &Word> {
    let mut after_dashdash = false;
    args.iter().filter(move |w| {
        if after_dashdash {
            return true;
        }
        if w.value == "--" {
            after_dashdash = true;
            return false;
        }
        !(w.value.starts_with('-') && w.value.len() > 1)
    })
}

fn rm(l: &mut Linter, args: &[Word]) {
    let recursive = has_flag(args, &['r', 'R'], &["--recursive"]).is_some();
    let force = has_flag(args, &['f'], &["--force"]).is_some();
    if !(recursive || force) {
        return;
    }
    let flags = match (recursive, force) {
        (true, true) => "-rf",
        (true, false) => "-r",
        _ => "-f",
    };
    let no_preserve = args.iter().any(|w| w.value == "--no-preserve-root");
    let extra = if no_preserve {
        " with --no-preserve-root"
    } else {
        ""
    };
    let workspace = l.ctx.workspace;
    for w in operands(args) {
        let loc = l.locate(w);
        if paths::is_broad(&loc) {
            let what = if loc == Loc::Unresolved {
                "an unresolved variable"
            } else {
                "a broad path"
            };
            let msg = format!("`rm {flags}` of {what} ({}){extra}", w.value);
            l.push(Destructive, "rm_broad_target", w, msg);
        } else if paths::is_outside(&loc, workspace) {
            let (rule, msg) = if recursive {
                (
                    "rm_recursive_outside_workspace",
                    format!("`rm {flags}` of {} outside the workspace{extra}", w.value),
                )
            } else {
                (
                    "rm_force_outside_workspace",
                    format!("`rm -f` of {} outside the workspace", w.value),
                )
            };
            l.push(Destructive, rule, w, msg);
        }
    }
}

fn recursive_permissions(l: &mut Linter, name: &str, args: &[Word]) {
    let Some(flag) = has_flag(args, &['R'], &["--recursive"]).map(|i| &args[i]) else {
        return;
    };
    let mut outside = false;
    for w in operands(args).skip(1) {
        let loc = l.locate(w);
        if paths::is_broad(&loc) || paths::is_outside(&loc, l.ctx.workspace) {
            outside = true;
            let msg = format!("`{name} -R` on {} outside the workspace", w.value);
            l.push(Destructive, "recursive_permission_change", w, msg);
        }
    }
    if !outside {
        l.push(
            Destructive,
            "recursive_permission_change",
            flag,
            format!("`{name} -R` changes a whole tree"),
        );
    }
}

fn find(l: &mut Linter, args: &[Word], depth: usize) {
    for (i, w) in args.iter().enumerate() {
        match w.value.as_str() {
            "-delete" => l.push(
                Destructive,
                "find_delete",
                w,
                "`find -delete` removes every match".into(),
            ),
            "-exec" | "-execdir" | "-ok" | "-okdir" => {
                if let Some(x) = args
                    .get(i + 1)
                    .filter(|x| matches!(name(x), "rm" | "shred" | "unlink" | "rmdir"))
                {
                    l.push(
                        Destructive,
                        "find_delete",
                        x,
                        format!("`find {} {}` removes every match", w.value, x.value),
                    );
                }
                // The executed command is linted like any other (`sh -c '...'`).
                let inner = &args[i + 1..];
                let end = inner
                    .iter()
                    .position(|a| a.value == ";" || a.value == "+")
                    .unwrap_or(inner.len());
                l.command(&inner[..end], &[], depth);
            }
            _ => {}
        }
    }
}

fn sql(l: &mut Linter, name: &str, args: &[Word]) {
    let (short, long) = if name == "psql" {
        ("-c", "--command")
    } else {
        ("-e", "--execute")
    };
    for (i, w) in args.iter().enumerate() {
        let v = w.value.as_str();
        let text = if name == "sqlite3" {
            Some(w)
        } else if v == short || v == long {
            args.get(i + 1)
        } else if v.starts_with(short) || v.starts_with(&format!("{long}=")) {
            Some(w)
        } else {
            None
        };
        let Some(t) = text else { continue };
        let norm = t
            .value
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        if ["DROP TABLE", "DROP DATABASE", "DROP SCHEMA"]
            .iter()
            .any(|d| norm.contains(d))
        {
            l.push(
                Destructive,
                "sql_drop",
                t,
                format!("`{name}` runs DROP TABLE/DATABASE"),
            );
        }
    }
}
