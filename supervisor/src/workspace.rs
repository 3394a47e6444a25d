//! Per-run git workspaces: `<root>/<flow>/<run>`, a self-contained repository
//! with HEAD detached at the commit the flow's ref resolved to.
//!
//! How a workspace is made, and why:
//! - Not `git worktree add`: a linked worktree writes into the user's repo
//!   (`.git/worktrees/<name>`) and its `.git` file points outside the
//!   workspace, so a node would need the user's repo in its jail.
//! - Not `git clone`: a local clone hard-links the object files (a node owning
//!   the same inode could chmod and rewrite the user's objects), copies every
//!   ref and records the user's repo path as `origin`.
//! - Instead: `git init` with libgit2's built-in template only (never the
//!   user's `init.templateDir`, which may hold hooks), then the source's
//!   packbuilder streams the commit and its history into the new object
//!   database, then HEAD is detached at the commit and checked out with force.
//!   The workspace shares no file with the source and names no path outside.
//! - Before anything is written, the commit's tree is searched for symlinks
//!   whose target leaves the workspace (absolute, or `..` past the top after
//!   following the tree's own symlinks); such a tree is refused, naming the path.
//!
//! Modes: the root is created 0700 and must be a directory owned by us and not
//! writable by group or others (else another user could plant a `<flow>`
//! symlink). Flow and run directories are 0755 so the root's mode alone
//! decides who may enter. Checkout writes 0644/0755 files, never set-id bits.
//! A root path that is itself a symlink is followed once, at `open`: it is the
//! operator's configuration; everything after works on the canonical path and
//! never follows a symlink below the root.
//!
//! The caller clears libgit2's config search paths (`git2::opts::set_search_path`
//! with "" for System, XDG, Global and ProgramData) before its first git2 call:
//! libgit2 loads them on every repository open, an unreadable `$HOME/.gitconfig`
//! fails every operation, and a user's `core.autocrlf` would change what a
//! workspace contains. `WorkspaceRoot::open` checks that the config loads.
//! The source repo must belong to our uid: libgit2 refuses other owners unless
//! `safe.directory` allows them. Every call blocks; use `spawn_blocking`.
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

mod files;
mod git;
use files::{disk_usage, name_dirs, remove_tree};
use git::{open_source, populate, refuse_escaping_symlinks, resolve_commit};

/// Longest file name (NAME_MAX, limits.h).
const NAME_MAX: usize = 255;
const ROOT_MODE: u32 = 0o700;
const DIR_MODE: u32 = 0o755;
/// Under a group-shared root (system mode): the umask (the unit's 0007)
/// and the root's setgid bit, which new directories inherit, make these
/// 2770 without a chmod that names the setgid bit (systemd's
/// RestrictSUIDSGID= forbids that one).
const SHARED_DIR_MODE: u32 = 0o770;

/// A libgit2 error in words: its message, and what kind of failure it was
/// when that adds something, never libgit2's `class=Os (2); code=...`
/// (its `Display`).
#[derive(Debug)]
pub struct GitError(pub git2::Error);

impl From<git2::Error> for GitError {
    fn from(e: git2::Error) -> Self {
        GitError(e)
    }
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use git2::ErrorCode as C;
        let kind = match self.0.code() {
            C::NotFound => Some("not found"),
            C::Exists => Some("already exists"),
            C::Ambiguous => Some("ambiguous"),
            C::BareRepo => Some("a bare repository"),
            C::UnbornBranch => Some("the branch has no commit yet"),
            C::Locked => Some("locked by another git process"),
            C::Owner => Some("owned by another user (git's safe.directory)"),
            C::InvalidSpec => Some("not a valid reference"),
            _ => None,
        };
        let msg = self.0.message().trim_end_matches('.');
        match kind {
            Some(k) if !msg.contains(k) => write!(f, "{msg} ({k})"),
            _ => f.write_str(msg),
        }
    }
}

impl std::error::Error for GitError {}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("create workspace root {}", .path.display())]
    CreateRoot { path: PathBuf, source: io::Error },
    #[error("resolve workspace root {}", .path.display())]
    CanonicalizeRoot { path: PathBuf, source: io::Error },
    #[error("workspace root {}: {reason}", .path.display())]
    UnsafeRoot { path: PathBuf, reason: String },
    #[error("load the git configuration (clear libgit2's config search paths at start-up)")]
    GitConfig { source: GitError },
    #[error("{what} name {name:?} is not 1 to 255 of [A-Za-z0-9_-]")]
    BadName { what: &'static str, name: String },
    #[error("flow directory {} is a symlink", .path.display())]
    FlowDirSymlink { path: PathBuf },
    #[error("flow directory {} is not a directory", .path.display())]
    FlowDirNotDir { path: PathBuf },
    #[error("flow directory {} resolves to {}, outside the root", .path.display(), .resolved.display())]
    FlowDirOutside { path: PathBuf, resolved: PathBuf },
    #[error("create directory {}", .path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("workspace {} already exists", .path.display())]
    Exists { path: PathBuf },
    #[error("open git repository {}", .repo.display())]
    OpenRepo { repo: PathBuf, source: GitError },
    #[error("resolve ref {git_ref:?} to a commit in {}", .repo.display())]
    ResolveRef {
        repo: PathBuf,
        git_ref: String,
        source: GitError,
    },
    #[error("read tree of commit {commit} in {}", .repo.display())]
    ReadTree {
        repo: PathBuf,
        commit: String,
        source: GitError,
    },
    #[error("symlink {path} in commit {commit} points outside the workspace (to {target})")]
    EscapingSymlink {
        path: String,
        target: String,
        commit: String,
    },
    #[error("init repository in {}", .path.display())]
    InitRepo { path: PathBuf, source: GitError },
    #[error("copy objects of {commit} from {} into {}", .repo.display(), .path.display())]
    CopyObjects {
        repo: PathBuf,
        path: PathBuf,
        commit: String,
        source: GitError,
    },
    #[error("check out {commit} in {}", .path.display())]
    Checkout {
        path: PathBuf,
        commit: String,
        source: GitError,
    },
    #[error("{} is not a workspace directory", .path.display())]
    NotWorkspace { path: PathBuf },
    #[error("remove {}", .path.display())]
    Remove { path: PathBuf, source: io::Error },
    #[error("read directory {}", .path.display())]
    ReadDir { path: PathBuf, source: io::Error },
    #[error("stat {}", .path.display())]
    Stat { path: PathBuf, source: io::Error },
}

/// The canonical directory that holds every workspace.
#[derive(Debug, Clone)]
pub struct WorkspaceRoot {
    root: PathBuf,
    /// Mode of the directories made here: DIR_MODE, or SHARED_DIR_MODE.
    dir_mode: u32,
}

/// A checked-out workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub path: PathBuf,
    /// Full hex sha of the checked-out commit.
    pub commit: String,
    /// The ref as the flow gave it.
    pub git_ref: String,
}

/// One `<flow>/<run>` directory found under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceEntry {
    pub flow: String,
    pub run: String,
    pub path: PathBuf,
    pub modified: SystemTime,
}

/// What `gc` removed and what it could not.
#[derive(Debug, Default)]
pub struct GcReport {
    /// Removed workspaces with the bytes each held on disk.
    pub removed: Vec<(PathBuf, u64)>,
    pub bytes_freed: u64,
    pub failed: Vec<(PathBuf, WorkspaceError)>,
}

/// Check, reading only, that `repo` at `git_ref` can be checked out: the
/// repository opens, the ref names a commit and no symlink in its tree
/// points outside. Returns the commit (`aiopsctl lint` uses this).
pub fn check_source(repo: &Path, git_ref: &str) -> Result<String, WorkspaceError> {
    read_source(repo, git_ref).map(|(_, commit)| commit.to_string())
}

fn read_source(
    repo: &Path,
    git_ref: &str,
) -> Result<(git2::Repository, git2::Oid), WorkspaceError> {
    let src = open_source(repo)?;
    let commit = resolve_commit(&src, repo, git_ref)?;
    refuse_escaping_symlinks(&src, repo, commit)?;
    Ok((src, commit))
}

impl WorkspaceRoot {
    /// Create (0700) or open the root, canonicalise it, and refuse one that
    /// is not a directory owned by us or that group or others may write, and
    /// refuse to start when libgit2 cannot load its configuration.
    pub fn open(root: &Path) -> Result<WorkspaceRoot, WorkspaceError> {
        match DirBuilder::new()
            .recursive(true)
            .mode(ROOT_MODE)
            .create(root)
        {
            Ok(()) => {}
            Err(source) => {
                return Err(WorkspaceError::CreateRoot {
                    path: root.to_path_buf(),
                    source,
                })
            }
        }
        let canonical =
            fs::canonicalize(root).map_err(|source| WorkspaceError::CanonicalizeRoot {
                path: root.to_path_buf(),
                source,
            })?;
        let meta = lstat(&canonical)?;
        let unsafe_root = |reason: String| WorkspaceError::UnsafeRoot {
            path: canonical.clone(),
            reason,
        };
        if !meta.is_dir() {
            return Err(unsafe_root("not a directory".into()));
        }
        let euid = nix::unistd::geteuid().as_raw();
        if meta.uid() != euid {
            return Err(unsafe_root(format!(
                "owned by uid {}, not {euid}",
                meta.uid()
            )));
        }
        // Group-writable only as system mode sets it up (tmpfiles.d:
        // 2770 aiops:aiops-work): setgid, so the jail's group owns what is
        // made under it, and closed to others.
        let group_shared = meta.mode() & 0o2000 != 0 && meta.mode() & 0o007 == 0;
        if meta.mode() & 0o002 != 0 || (meta.mode() & 0o020 != 0 && !group_shared) {
            return Err(unsafe_root(format!(
                "mode {:o} lets group or others write (a group-writable root must be setgid and closed to others, as 2770)",
                meta.mode() & 0o7777
            )));
        }
        // Fail here, once, rather than on every node's workspace.
        git2::Config::open_default().map_err(|e| WorkspaceError::GitConfig { source: e.into() })?;
        Ok(WorkspaceRoot {
            root: canonical,
            dir_mode: if group_shared {
                SHARED_DIR_MODE
            } else {
                DIR_MODE
            },
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The path `create` would use, after checking both names.
    pub fn workspace_path(&self, flow: &str, run: &str) -> Result<PathBuf, WorkspaceError> {
        check_name("flow", flow)?;
        check_name("run", run)?;
        Ok(self.root.join(flow).join(run))
    }

    /// Check out `git_ref` of `repo` into `<root>/<flow>/<run>`. Any failure
    /// leaves nothing behind.
    pub fn create(
        &self,
        flow: &str,
        run: &str,
        repo: &Path,
        git_ref: &str,
    ) -> Result<Workspace, WorkspaceError> {
        let target = self.workspace_path(flow, run)?;
        // Everything that only reads the source runs before the first write.
        let (src, commit) = read_source(repo, git_ref)?;
        let sha = commit.to_string();

        let flow_dir = self.root.join(flow);
        let made_flow_dir = self.ensure_flow_dir(&flow_dir)?;
        if let Err(source) = DirBuilder::new().mode(self.dir_mode).create(&target) {
            if made_flow_dir {
                let _ = fs::remove_dir(&flow_dir);
            }
            return Err(if source.kind() == io::ErrorKind::AlreadyExists {
                WorkspaceError::Exists { path: target }
            } else {
                WorkspaceError::CreateDir {
                    path: target,
                    source,
                }
            });
        }
        match populate(&src, repo, commit, &target, self.dir_mode) {
            Ok(()) => Ok(Workspace {
                path: target,
                commit: sha,
                git_ref: git_ref.to_string(),
            }),
            Err(e) => {
                // Fail closed: a partial checkout must not survive to be run in.
                let _ = remove_tree(&target);
                if made_flow_dir {
                    let _ = fs::remove_dir(&flow_dir);
                }
                Err(e)
            }
        }
    }

    /// Make `<root>/<flow>` if missing; refuse a symlink or anything that is
    /// not a directory inside the root. Returns whether it was made here.
    fn ensure_flow_dir(&self, flow_dir: &Path) -> Result<bool, WorkspaceError> {
        let made = match DirBuilder::new().mode(self.dir_mode).create(flow_dir) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(source) => {
                return Err(WorkspaceError::CreateDir {
                    path: flow_dir.to_path_buf(),
                    source,
                })
            }
        };
        let meta = lstat(flow_dir)?;
        if meta.file_type().is_symlink() {
            return Err(WorkspaceError::FlowDirSymlink {
                path: flow_dir.to_path_buf(),
            });
        }
        if !meta.is_dir() {
            return Err(WorkspaceError::FlowDirNotDir {
                path: flow_dir.to_path_buf(),
            });
        }
        let resolved = fs::canonicalize(flow_dir).map_err(|source| WorkspaceError::Stat {
            path: flow_dir.to_path_buf(),
            source,
        })?;
        if resolved.parent() != Some(self.root.as_path()) {
            return Err(WorkspaceError::FlowDirOutside {
                path: flow_dir.to_path_buf(),
                resolved,
            });
        }
        Ok(made)
    }

    /// Remove one run's workspace. Refuses anything that is not a real
    /// directory at `<root>/<flow>/<run>`; symlinks are never followed.
    pub fn remove(&self, flow: &str, run: &str) -> Result<(), WorkspaceError> {
        let target = self.workspace_path(flow, run)?;
        let flow_dir = self.root.join(flow);
        for dir in [&flow_dir, &target] {
            let meta = lstat(dir)?;
            if !meta.file_type().is_dir() {
                return Err(WorkspaceError::NotWorkspace { path: dir.clone() });
            }
        }
        remove_tree(&target)
    }

    /// Every `<flow>/<run>` directory with valid names; anything else under
    /// the root (files, symlinks, odd names) is not a workspace and is skipped.
    pub fn list(&self) -> Result<Vec<WorkspaceEntry>, WorkspaceError> {
        let mut out = Vec::new();
        for (flow, flow_dir) in name_dirs(&self.root)? {
            for (run, path) in name_dirs(&flow_dir)? {
                // A workspace removed since read_dir (a concurrent gc) is gone, not an error.
                let meta = match fs::symlink_metadata(&path) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    other => other.map_err(|source| WorkspaceError::Stat {
                        path: path.clone(),
                        source,
                    })?,
                };
                let modified = meta.modified().map_err(|source| WorkspaceError::Stat {
                    path: path.clone(),
                    source,
                })?;
                out.push(WorkspaceEntry {
                    flow: flow.clone(),
                    run,
                    path,
                    modified,
                });
            }
        }
        out.sort_by(|a, b| (&a.flow, &a.run).cmp(&(&b.flow, &b.run)));
        Ok(out)
    }
}

/// Remove every workspace `keep` rejects. A failure on one entry is reported
/// and the rest continue; flow directories stay (a concurrent `create` may be
/// about to use one).
pub fn gc(
    root: &WorkspaceRoot,
    keep: impl Fn(&WorkspaceEntry) -> bool,
) -> Result<GcReport, WorkspaceError> {
    let mut report = GcReport::default();
    for entry in root.list()? {
        if keep(&entry) {
            continue;
        }
        let bytes = disk_usage(&entry.path);
        match root.remove(&entry.flow, &entry.run) {
            Ok(()) => {
                report.bytes_freed += bytes;
                report.removed.push((entry.path, bytes));
            }
            Err(e) => report.failed.push((entry.path, e)),
        }
    }
    Ok(report)
}

fn check_name(what: &'static str, name: &str) -> Result<(), WorkspaceError> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(WorkspaceError::BadName {
            what,
            name: name.to_string(),
        })
    }
}

fn lstat(path: &Path) -> Result<fs::Metadata, WorkspaceError> {
    fs::symlink_metadata(path).map_err(|source| WorkspaceError::Stat {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_outside_the_charset_are_refused() {
        for bad in ["", ".", "..", "a/b", "/", "a b", "é", &"x".repeat(256)] {
            assert!(check_name("run", bad).is_err(), "{bad:?}");
        }
        for good in ["a", "Run_1-x", &"x".repeat(255)] {
            assert!(check_name("run", good).is_ok(), "{good:?}");
        }
    }
}
