//! Every rule the lint can report, for docs and `aiopsctl lint --rules`.
//! A test checks that each finding the test suite produces is listed here.
use super::FindingKind::{self, Destructive, Escape, Unparsed};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    pub name: &'static str,
    pub kind: FindingKind,
    pub summary: &'static str,
}

const fn r(name: &'static str, kind: FindingKind, summary: &'static str) -> RuleInfo {
    RuleInfo {
        name,
        kind,
        summary,
    }
}

pub const RULES: &[RuleInfo] = &[
    r("rm_broad_target", Destructive, "rm -r/-f of /, a top-level directory, ~, $HOME, *, ., .., or an unresolved $VAR/$(...)"),
    r("rm_recursive_outside_workspace", Destructive, "rm -r of a path outside the workspace (absolute, ~/..., or climbing with ..)"),
    r("rm_force_outside_workspace", Destructive, "rm -f of a path outside the workspace"),
    r("xargs_rm", Destructive, "xargs rm: deletes paths read from input"),
    r("find_delete", Destructive, "find -delete, or find -exec/-execdir/-ok rm|shred|unlink|rmdir"),
    r("git_push", Destructive, "git push of any kind; the message says when it forces (--force, -f, +refspec, --mirror) or deletes"),
    r("git_reset_hard", Destructive, "git reset --hard"),
    r("git_clean_force", Destructive, "git clean -f together with -d, -x or -X"),
    r("git_discard_changes", Destructive, "git checkout [--] . or git restore . (not --staged alone)"),
    r("git_branch_force_delete", Destructive, "git branch -D, or --delete with --force"),
    r("git_stash_drop", Destructive, "git stash drop or git stash clear"),
    r("kubectl_delete", Destructive, "kubectl (or oc) delete"),
    r("terraform_destroy", Destructive, "terraform/tofu destroy, or apply -destroy"),
    r("terraform_apply_auto_approve", Destructive, "terraform/tofu apply -auto-approve"),
    r("helm_uninstall", Destructive, "helm uninstall/delete"),
    r("docker_remove", Destructive, "docker/podman rm, rmi, system/volume/container/image/network/builder rm|prune, compose rm, compose down -v"),
    r("mkfs", Destructive, "mkfs, mkfs.* or mke2fs"),
    r("dd_output", Destructive, "dd with of="),
    r("shred", Destructive, "shred"),
    r("wipefs", Destructive, "wipefs"),
    r("recursive_permission_change", Destructive, "chmod/chown/chgrp -R; names each target outside the workspace"),
    r("truncate_system_path", Destructive, "truncate of a file under /etc, /usr, /boot, /bin, /sbin, /lib* or a block device"),
    r("redirect_truncates_system_path", Destructive, ">, >| or &> into a system path or block device"),
    r("sql_drop", Destructive, "DROP TABLE/DATABASE/SCHEMA in psql -c, mysql/mariadb -e, or sqlite3 arguments"),
    r("privilege_escalation", Escape, "sudo, doas, pkexec or su; the wrapped command is linted too"),
    r("sensitive_path", Escape, "a word naming credentials (~/.ssh, ~/.aws, ~/.kube, ~/.netrc, ...) or host internals (/etc/shadow, docker.sock, /proc/*/root, /sys/kernel, ...)"),
    r("network_redirection", Escape, "bash /dev/tcp/... or /dev/udp/... sockets"),
    r("outside_capabilities", Escape, "an absolute path outside the context's readable/writable paths and workspace (only when the context lists some)"),
    r("namespace_escape", Escape, "nsenter, unshare or setns"),
    r("mount", Escape, "mount"),
    r("chroot", Escape, "chroot or pivot_root"),
    r("capsh", Escape, "capsh"),
    r("kernel_module", Escape, "insmod, modprobe or rmmod"),
    r("container_privileged", Escape, "docker/podman run|create with --privileged, --pid=host, or --cap-add ALL/SYS_ADMIN"),
    r("container_host_mount", Escape, "docker/podman run -v mounting the host root or a sensitive path such as docker.sock"),
    r("remote_code_execution", Escape, "downloaded code executed: curl|wget ... | sh/python/..., sh -c \"$(curl ...)\", bash <(curl ...), source <(curl ...)"),
    r("unparsed", Unparsed, "the command (or a nested sh -c/eval string) could not be parsed, or nests too deeply"),
];
