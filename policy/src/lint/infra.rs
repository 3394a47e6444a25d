//! Version control and infrastructure tools: git, terraform, docker.
use super::parse::Word;
use super::paths::{self, Loc};
use super::rules::{has_flag, operands, positional, positional_index};
use super::{FindingKind, Linter};

use FindingKind::{Destructive, Escape};

pub(super) fn git(l: &mut Linter, args: &[Word]) {
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
            // `.` cannot name a branch, so it is a pathspec with or without `--`.
            let everything =
                operands(rest).find(|w| matches!(w.value.as_str(), "." | "*" | ":/" | "./"));
            if let (Some(w), false) = (everything, staged_only) {
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

pub(super) fn terraform(l: &mut Linter, name: &str, args: &[Word]) {
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

pub(super) fn docker(l: &mut Linter, name: &str, args: &[Word]) {
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
        ("compose", Some("rm")) => sub2,
        ("compose", Some("down"))
            if args
                .iter()
                .any(|w| w.value == "-v" || w.value == "--volumes") =>
        {
            sub2
        }
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
