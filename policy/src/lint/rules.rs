//! Command-specific rules, keyed by the command name after wrappers.
use super::parse::Word;
use super::paths::{self, Loc};
use super::{name, skip_options, FindingKind, Linter};

use FindingKind::{Destructive, Escape};

/// Lint one command (`name` is `cmd`'s basename) with its arguments.
pub(super) fn command(l: &mut Linter, name: &str, cmd: &Word, args: &[Word], depth: usize) {
    match name {
        "rm" => rm(l, args),
        "git" => git(l, args),
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
        "terraform" | "tofu" => terraform(l, name, args),
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
        "docker" | "podman" => docker(l, name, args),
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
                if paths::is_system(&paths::locate(w)) {
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
fn positional_index(args: &[Word], valued: &[&str], nth: usize) -> Option<usize> {
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

fn positional<'w>(args: &'w [Word], valued: &[&str], nth: usize) -> Option<&'w Word> {
    positional_index(args, valued, nth).map(|i| &args[i])
}

/// Short-option clusters (`-rf`) and long options of a command.
fn has_flag(args: &[Word], short: &[char], long: &[&str]) -> Option<usize> {
    args.iter().take_while(|w| w.value != "--").position(|w| {
        let v = w.value.as_str();
        long.contains(&v)
            || (v.starts_with('-')
                && !v.starts_with("--")
                && v[1..].chars().any(|c| short.contains(&c)))
    })
}

fn operands(args: &[Word]) -> impl Iterator<Item = &Word> {
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
        let loc = paths::locate(w);
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

fn git(l: &mut Linter, args: &[Word]) {
    let valued = ["-C", "-c", "--git-dir", "--work-tree", "--namespace"];
    let Some(sub_i) = positional_index(args, &valued, 0) else {
        return;
    };
    let sub = &args[sub_i];
    let rest = &args[sub_i + 1..];
    let has = |v: &str| rest.iter().any(|w| w.value == v);
    let short = |c: char| has_flag(rest, &[c], &[]).is_some();
    match sub.value.as_str() {
        "push" => {
            let force = has_flag(rest, &['f'], &["--force", "--force-with-lease", "--mirror"])
                .is_some()
                || operands(rest).any(|w| w.value.starts_with('+'));
            let delete =
                has("--delete") || short('d') || operands(rest).any(|w| w.value.starts_with(':'));
            let msg = match (force, delete) {
                (true, _) => {
                    "`git push` with force (--force, -f or a +refspec) overwrites remote history"
                }
                (_, true) => "`git push` deleting remote refs",
                _ => "`git push` publishes commits outside the sandbox",
            };
            l.push(Destructive, "git_push", sub, msg.into());
        }
        "reset" => {
            if let Some(w) = rest.iter().find(|w| w.value == "--hard") {
                l.push(
                    Destructive,
                    "git_reset_hard",
                    w,
                    "`git reset --hard` discards uncommitted changes".into(),
                );
            }
        }
        "clean" => {
            let force = has_flag(rest, &['f'], &["--force"]).is_some();
            let dirs = has_flag(rest, &['d', 'x', 'X'], &[]).is_some();
            if force && dirs {
                l.push(
                    Destructive,
                    "git_clean_force",
                    sub,
                    "`git clean -f` with -d/-x deletes untracked files and directories".into(),
                );
            }
        }
        "checkout" | "restore" => {
            let staged_only = sub.value == "restore"
                && (has("--staged") || short('S'))
                && !(has("--worktree") || short('W'));
            let after = rest
                .iter()
                .position(|w| w.value == "--")
                .map_or(rest, |i| &rest[i + 1..]);
            let everything = after
                .iter()
                .find(|w| matches!(w.value.as_str(), "." | "*" | ":/" | "./"));
            let applies = sub.value == "restore" || after.len() < rest.len();
            if let (Some(w), true, false) = (everything, applies, staged_only) {
                let msg = format!(
                    "`git {} {}` discards uncommitted changes",
                    sub.value, w.value
                );
                l.push(Destructive, "git_discard_changes", w, msg);
            }
        }
        "branch" => {
            let force_delete = rest.iter().any(|w| w.value == "-D")
                || ((has("--delete") || short('d')) && (has("--force") || short('f')));
            if force_delete {
                l.push(
                    Destructive,
                    "git_branch_force_delete",
                    sub,
                    "`git branch -D` deletes an unmerged branch".into(),
                );
            }
        }
        "stash" => {
            if let Some(w) = rest
                .first()
                .filter(|w| w.value == "drop" || w.value == "clear")
            {
                l.push(
                    Destructive,
                    "git_stash_drop",
                    w,
                    format!("`git stash {}` discards stashed changes", w.value),
                );
            }
        }
        _ => {}
    }
}

fn terraform(l: &mut Linter, name: &str, args: &[Word]) {
    let Some(i) = positional_index(args, &[], 0) else {
        return;
    };
    let (sub, after) = (&args[i], &args[i + 1..]);
    if sub.value == "destroy"
        || (sub.value == "apply" && after.iter().any(|w| w.value == "-destroy"))
    {
        l.push(
            Destructive,
            "terraform_destroy",
            sub,
            format!("`{name} destroy` deletes managed infrastructure"),
        );
    } else if sub.value == "apply" {
        let auto = after.iter().find(|w| {
            matches!(
                w.value.as_str(),
                "-auto-approve" | "--auto-approve" | "-auto-approve=true"
            )
        });
        if let Some(w) = auto {
            l.push(
                Destructive,
                "terraform_apply_auto_approve",
                w,
                format!("`{name} apply -auto-approve` changes infrastructure without review"),
            );
        }
    }
}

fn docker(l: &mut Linter, name: &str, args: &[Word]) {
    let valued = [
        "-H",
        "--host",
        "--context",
        "-c",
        "--config",
        "-l",
        "--log-level",
    ];
    let Some(sub) = positional(args, &valued, 0) else {
        return;
    };
    let sub2 = positional(args, &valued, 1);
    let removes = match (sub.value.as_str(), sub2.map(|w| w.value.as_str())) {
        ("rm" | "rmi", _) => Some(sub),
        (
            "system" | "volume" | "container" | "image" | "network" | "builder",
            Some("rm" | "prune" | "remove"),
        ) => sub2,
        _ => None,
    };
    if let Some(w) = removes {
        l.push(
            Destructive,
            "docker_remove",
            w,
            format!(
                "`{name} {}` removes containers, images or volumes",
                sub.value
            ),
        );
    }
    let runs = matches!(sub.value.as_str(), "run" | "create")
        || (sub.value == "container"
            && sub2.is_some_and(|w| w.value == "run" || w.value == "create"));
    if !runs {
        return;
    }
    for (i, w) in args.iter().enumerate() {
        let v = w.value.as_str();
        let next = args.get(i + 1).map_or("", |n| n.value.as_str());
        let privileged = v == "--privileged"
            || v == "--pid=host"
            || (v == "--pid" && next == "host")
            || [
                "--cap-add=ALL",
                "--cap-add=SYS_ADMIN",
                "--cap-add=all",
                "--cap-add=sys_admin",
            ]
            .contains(&v)
            || (v == "--cap-add"
                && matches!(next.to_ascii_uppercase().as_str(), "ALL" | "SYS_ADMIN"));
        if privileged {
            l.push(
                Escape,
                "container_privileged",
                w,
                format!("`{name} run {v}` gives the container host privileges"),
            );
        }
        let mount = match v {
            "-v" | "--volume" => args.get(i + 1),
            _ if v.starts_with("--volume=") || (v.starts_with("-v") && v.len() > 2) => Some(w),
            _ => None,
        };
        if let Some(m) = mount {
            let spec = m
                .value
                .trim_start_matches("--volume=")
                .trim_start_matches("-v");
            let host = spec.split(':').next().unwrap_or("");
            let loc = paths::locate_str(host, m.dynamic);
            let host_root = matches!(&loc, Loc::Abs(c) if c.is_empty());
            if host_root || paths::sensitive(&loc).is_some() {
                l.push(
                    Escape,
                    "container_host_mount",
                    m,
                    format!("`{name} run -v {spec}` mounts a host root or runtime socket"),
                );
            }
        }
    }
}

fn recursive_permissions(l: &mut Linter, name: &str, args: &[Word]) {
    let Some(flag) = has_flag(args, &['R'], &["--recursive"]).map(|i| &args[i]) else {
        return;
    };
    let mut outside = false;
    for w in operands(args).skip(1) {
        let loc = paths::locate(w);
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
