//! What a jail must not rewrite in its writable roots, found by walking them:
//! every git directory's admin files (hooks, config, info, commondir, ...),
//! the hook directories and include files its config names, `.git` files,
//! and files hard-linked to a path outside the writable roots. The jailer
//! keeps these read-only (and pins the directories above them) before the
//! node starts; the supervisor searches again after the run and reports
//! every git directory, `.git` file and protected path that appeared or
//! changed (docs/security-model.md, "Git directories and hard links").
//!
//! Bounded by `GuardPlan`: past its depth, directory, repository or
//! linked-file bound the search fails and the node is refused, naming the
//! bound and the fix. A search that stopped early would leave the rest
//! writable, which is never done silently.
#![forbid(unsafe_code)]

pub mod config;

use aiops_proto::plan::GuardPlan;
use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};
use std::collections::{BTreeSet, HashMap};
use std::ffi::{CStr, CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Admin files of a git directory that decide what git runs or where it
/// looks: hooks, config (core.fsmonitor, core.hooksPath, filters, ...),
/// info, and the files that point a linked worktree or a submodule at
/// another git directory. Objects, refs, HEAD and the index stay writable:
/// git needs them, and nothing in them runs.
pub const GITDIR_ADMIN: &[&str] = &[
    "hooks",
    "config",
    "config.worktree",
    "info",
    "commondir",
    "gitdir",
];

/// How deep `include.path` chains are followed.
const MAX_INCLUDE_DEPTH: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "{}: more than {max} directory levels below {}; make a smaller directory writable or raise [protected.search] depth in the profile",
        .path.display(), .root.display()
    )]
    TooDeep {
        root: PathBuf,
        path: PathBuf,
        max: u32,
    },
    #[error(
        "more than {max} directories in the writable roots (stopped at {}); make a smaller directory writable or raise [protected.search] dirs in the profile",
        .path.display()
    )]
    TooManyDirs { path: PathBuf, max: u32 },
    #[error(
        "more than {max} git directories in the writable roots (the last: {}); raise [protected.search] repositories in the profile",
        .path.display()
    )]
    TooManyRepos { path: PathBuf, max: u32 },
    #[error(
        "{count} files in the writable roots are hard-linked to files outside them (e.g. {}), more than the {max} kept read-only; a write through one would change the other copy. Re-create the tree without hard links (git clone --no-hardlinks, pnpm's package-import-method=copy, UV_LINK_MODE=copy) or raise [protected.search] linked_files in the profile",
        .example.display()
    )]
    TooManyLinked {
        count: usize,
        example: PathBuf,
        max: u32,
    },
    #[error("{}: {what}", .path.display())]
    Unprotectable { path: PathBuf, what: &'static str },
    #[error("search {}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> GuardError + '_ {
    move |source| GuardError::Io {
        path: path.into(),
        source,
    }
}

/// What a search found, as absolute host paths.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    /// Git directories: worktrees' `.git`, bare repositories, submodules'
    /// (`.git/modules/...`) and linked worktrees' (`.git/worktrees/ID`).
    pub repos: BTreeSet<PathBuf>,
    /// `.git` files (`gitdir: ...`), kept read-only too.
    pub git_files: BTreeSet<PathBuf>,
    /// Existing paths kept read-only: admin files, `.git` files, hook
    /// directories and include files that configs name, outside-linked files.
    pub read_only: BTreeSet<PathBuf>,
    /// Protected paths that do not exist; a node that creates one is reported.
    pub absent: BTreeSet<PathBuf>,
    /// Files hard-linked to a path outside the writable roots (also read-only).
    pub linked: BTreeSet<PathBuf>,
    /// Directories searched.
    pub dirs: u64,
}

impl Found {
    /// The directories between a writable root and each read-only path,
    /// pinned (bound onto themselves) so none can be renamed away and
    /// replaced: `mv .git x; mkdir .git` fails with EBUSY. Paths that are
    /// read-only themselves are not repeated.
    pub fn pins(&self, roots: &[PathBuf]) -> BTreeSet<PathBuf> {
        let mut pins = BTreeSet::new();
        for p in &self.read_only {
            let Some(root) = roots
                .iter()
                .filter(|r| p.starts_with(r))
                .max_by_key(|r| r.components().count())
            else {
                continue;
            };
            let mut a = p.parent();
            while let Some(d) = a.filter(|d| d.starts_with(root) && *d != root.as_path()) {
                if !self.read_only.contains(d) {
                    pins.insert(d.to_path_buf());
                }
                a = d.parent();
            }
        }
        pins
    }

    /// Every mount the jailer makes, shallow first: (path, read-only).
    /// Shallow first because each is a recursive bind of the path onto
    /// itself, which carries the mounts already below it.
    pub fn mounts(&self, roots: &[PathBuf]) -> Vec<(PathBuf, bool)> {
        let mut all: Vec<(PathBuf, bool)> = self
            .pins(roots)
            .into_iter()
            .map(|p| (p, false))
            .chain(self.read_only.iter().map(|p| (p.clone(), true)))
            .collect();
        all.sort_by(|a, b| (a.0.components().count(), &a.0).cmp(&(b.0.components().count(), &b.0)));
        all
    }

    /// One line for the jail's layer list.
    pub fn summary(&self) -> String {
        format!(
            "guard: {} git dir(s), {} path(s) read-only, {} outside-linked file(s), {} dir(s) searched",
            self.repos.len(),
            self.read_only.len(),
            self.linked.len(),
            self.dirs
        )
    }
}

/// Search `plan.roots` within `plan`'s bounds. `home` expands `~/` in
/// config paths; `links` also finds outside hard links (one stat per
/// regular file: the jailer needs it, the supervisor's report does not).
pub fn search(plan: &GuardPlan, home: Option<&Path>, links: bool) -> Result<Found, GuardError> {
    let roots: Vec<PathBuf> = plan
        .roots
        .iter()
        .map(|r| r.as_path().to_path_buf())
        .collect();
    let mut w = Walker {
        plan,
        home,
        links,
        roots: &roots,
        found: Found::default(),
        inodes: HashMap::new(),
    };
    for r in &roots {
        w.walk(r)?;
    }
    w.finish_links()?;
    Ok(w.found)
}

struct Walker<'a> {
    plan: &'a GuardPlan,
    home: Option<&'a Path>,
    links: bool,
    roots: &'a [PathBuf],
    found: Found,
    /// (dev, ino) of multiply-linked regular files → (st_nlink, paths seen).
    inodes: HashMap<(u64, u64), (u64, Vec<PathBuf>)>,
}

impl Walker<'_> {
    fn walk(&mut self, root: &Path) -> Result<(), GuardError> {
        let root_dev = fs::symlink_metadata(root).map_err(io_err(root))?.dev();
        let mut stack = vec![(root.to_path_buf(), 0u32)];
        while let Some((dir, depth)) = stack.pop() {
            self.found.dirs += 1;
            if self.found.dirs > u64::from(self.plan.max_dirs) {
                return Err(GuardError::TooManyDirs {
                    path: dir,
                    max: self.plan.max_dirs,
                });
            }
            let Some(listing) = self.list(&dir)? else {
                continue;
            };
            if listing.is_gitdir() {
                self.gitdir(&dir, None)?;
            }
            for (name, ty) in &listing.entries {
                let p = dir.join(OsStr::from_bytes(name.to_bytes()));
                if name.to_bytes() == b".git" {
                    match ty {
                        Kind::Dir => self.gitdir(&p, Some(&dir))?,
                        Kind::File => self.git_file(&p)?,
                        Kind::Symlink => {
                            return Err(GuardError::Unprotectable {
                                path: p,
                                what: "a .git symlink, which the jail could point at a git directory of its own; replace it with a `gitdir:` file",
                            })
                        }
                        Kind::Other => {}
                    }
                }
                if *ty == Kind::Dir {
                    // Relative to the open directory: one path component
                    // to resolve, not the whole path.
                    let Some(st) = stat_at(&listing.fd, name, &p)? else {
                        continue;
                    };
                    // Another mount: not in the jail, whose binds are not recursive.
                    if st.st_dev != root_dev {
                        continue;
                    }
                    if depth + 1 > self.plan.max_depth {
                        return Err(GuardError::TooDeep {
                            root: root.into(),
                            path: p,
                            max: self.plan.max_depth,
                        });
                    }
                    stack.push((p, depth + 1));
                }
            }
        }
        Ok(())
    }

    /// What of `dir` the search needs (its subdirectories, `.git`, the
    /// names that make a git directory; with `links`, its regular files'
    /// link counts go straight into `inodes`), or None for a directory
    /// this uid cannot read that the jail cannot write into either.
    fn list(&mut self, dir: &Path) -> Result<Option<Listing>, GuardError> {
        let fl = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match nix::fcntl::open(dir, fl, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::EACCES) => {
                // Skipped only if the jail cannot write into it either: not
                // ours (an owner may chmod it) and writable by no group or
                // other (group or other write may be the jail's).
                let m = fs::symlink_metadata(dir).map_err(io_err(dir))?;
                if m.uid() != nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0 {
                    return Ok(None);
                }
                return Err(GuardError::Unprotectable {
                    path: dir.into(),
                    what: "a directory the jail may write into but that cannot be searched for git directories; make it readable or move it out of the writable root",
                });
            }
            // Gone or swapped for a symlink since its parent was read.
            Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => return Ok(None),
            Err(e) => return Err(io_err(dir)(e.into())),
        };
        let dup = fd.try_clone().map_err(io_err(dir))?;
        let d = Dir::from_fd(dup).map_err(|e| io_err(dir)(e.into()))?;
        let mut entries = vec![];
        let mut marks = 0u8;
        for e in d {
            let e = e.map_err(|e| io_err(dir)(e.into()))?;
            let name = e.file_name();
            let b = name.to_bytes();
            if b == b"." || b == b".." {
                continue;
            }
            let ty = match e.file_type() {
                Some(t) => Kind::of(t),
                // DT_UNKNOWN (some filesystems): ask.
                None => match fstatat(&fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) => Kind::of_mode(st.st_mode),
                    Err(_) => continue,
                },
            };
            marks |= match (b, ty) {
                (b"HEAD", Kind::File) => 1,
                (b"objects", Kind::Dir) => 2,
                (b"refs", Kind::Dir) => 4,
                (b"commondir", Kind::File) => 8,
                _ => 0,
            };
            if ty == Kind::File && self.links && b != b".git" {
                // Inline, with no allocation unless the file has links.
                let Ok(st) = fstatat(&fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
                    continue; // gone meanwhile
                };
                if st.st_nlink > 1 {
                    self.inodes
                        .entry((st.st_dev, st.st_ino))
                        .or_insert_with(|| (st.st_nlink, vec![]))
                        .1
                        .push(dir.join(OsStr::from_bytes(b)));
                }
            } else if ty == Kind::Dir || b == b".git" {
                entries.push((name.to_owned(), ty));
            }
        }
        Ok(Some(Listing { fd, entries, marks }))
    }

    fn inside_roots(&self, p: &Path) -> bool {
        self.roots.iter().any(|r| p.starts_with(r))
    }

    /// A git directory: its admin files, the paths its config names.
    /// `worktree` is the directory holding a `.git` directory.
    fn gitdir(&mut self, g: &Path, worktree: Option<&Path>) -> Result<(), GuardError> {
        if !self.found.repos.insert(g.to_path_buf()) {
            return Ok(());
        }
        if self.found.repos.len() > self.plan.max_repos as usize {
            return Err(GuardError::TooManyRepos {
                path: g.into(),
                max: self.plan.max_repos,
            });
        }
        for a in GITDIR_ADMIN {
            self.protect(&g.join(a))?;
        }
        let mut entries = vec![];
        for name in ["config", "config.worktree"] {
            config::read(&g.join(name), &mut entries);
        }
        // Hooks run at the top of the worktree (a relative core.hooksPath
        // starts there): the directory holding `.git`, a linked worktree's
        // (its admin directory's `gitdir` names `<worktree>/.git`), a
        // submodule's `core.worktree`; in a bare repository, the git
        // directory itself.
        let linked = fs::read_to_string(g.join("gitdir"))
            .ok()
            .and_then(|t| t.lines().next().map(|l| normalize(&g.join(l.trim()))))
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let base = match worktree {
            Some(w) => w.to_path_buf(),
            None => linked.unwrap_or_else(|| {
                entries
                    .iter()
                    .rev()
                    .find(|e| e.key == "core.worktree")
                    .map(|e| normalize(&g.join(&e.value)))
                    .unwrap_or_else(|| g.to_path_buf())
            }),
        };
        self.config_paths(&entries, &base, 0)
    }

    /// core.hooksPath and include paths named in `entries`, protected when
    /// they lie in a writable root; includes are followed.
    fn config_paths(
        &mut self,
        entries: &[config::Entry],
        base: &Path,
        depth: u32,
    ) -> Result<(), GuardError> {
        for e in entries {
            let rel_to = match e.key.as_str() {
                "core.hookspath" => base.to_path_buf(),
                k if k == "include.path"
                    || (k.starts_with("includeif.") && k.ends_with(".path")) =>
                {
                    e.file.parent().map(Path::to_path_buf).unwrap_or_default()
                }
                _ => continue,
            };
            let Some(target) = self.resolve(&e.value, &rel_to) else {
                continue;
            };
            if !self.inside_roots(&target) {
                continue;
            }
            self.protect(&target)?;
            if e.key != "core.hookspath" && depth < MAX_INCLUDE_DEPTH {
                let mut inc = vec![];
                config::read(&target, &mut inc);
                self.config_paths(&inc, base, depth + 1)?;
            }
        }
        Ok(())
    }

    fn resolve(&self, value: &str, rel_to: &Path) -> Option<PathBuf> {
        let p = if let Some(rest) = value.strip_prefix("~/") {
            self.home?.join(rest)
        } else if value.starts_with('~') || value.starts_with("%(prefix)") || value.is_empty() {
            return None;
        } else {
            rel_to.join(value)
        };
        Some(normalize(&p))
    }

    fn git_file(&mut self, f: &Path) -> Result<(), GuardError> {
        self.found.git_files.insert(f.to_path_buf());
        self.protect(f)
    }

    /// Keep `p` read-only if it exists, else remember it as absent.
    fn protect(&mut self, p: &Path) -> Result<(), GuardError> {
        match fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => Err(GuardError::Unprotectable {
                path: p.into(),
                what: "a symlink where a protected path should be (the jail could point it elsewhere); replace it with the directory or file itself",
            }),
            Ok(m) if m.file_type().is_fifo() || m.file_type().is_socket() => {
                Err(GuardError::Unprotectable {
                    path: p.into(),
                    what: "a fifo or socket where a protected path should be",
                })
            }
            Ok(_) => {
                self.found.read_only.insert(p.into());
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                self.found.absent.insert(p.into());
                Ok(())
            }
            Err(e) => Err(io_err(p)(e)),
        }
    }

    /// An inode with more links than the search saw has one outside the
    /// writable roots: every path to it here is kept read-only.
    fn finish_links(&mut self) -> Result<(), GuardError> {
        let mut linked: Vec<PathBuf> = vec![];
        for (nlink, paths) in self.inodes.values() {
            if (paths.len() as u64) < *nlink {
                linked.extend(paths.iter().cloned());
            }
        }
        linked.sort();
        if linked.len() > self.plan.max_linked as usize {
            return Err(GuardError::TooManyLinked {
                count: linked.len(),
                example: linked[0].clone(),
                max: self.plan.max_linked,
            });
        }
        for p in linked {
            self.found.read_only.insert(p.clone());
            self.found.linked.insert(p);
        }
        Ok(())
    }
}

/// A directory entry's type, as far as the search cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

impl Kind {
    fn of(t: Type) -> Kind {
        match t {
            Type::Directory => Kind::Dir,
            Type::File => Kind::File,
            Type::Symlink => Kind::Symlink,
            _ => Kind::Other,
        }
    }

    fn of_mode(mode: u32) -> Kind {
        match mode & libc_mode::S_IFMT {
            libc_mode::S_IFDIR => Kind::Dir,
            libc_mode::S_IFREG => Kind::File,
            libc_mode::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// The file-type bits of st_mode (inode(7)), the same on every Linux arch.
mod libc_mode {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFDIR: u32 = 0o040000;
    pub const S_IFREG: u32 = 0o100000;
    pub const S_IFLNK: u32 = 0o120000;
}

struct Listing {
    fd: OwnedFd,
    entries: Vec<(CString, Kind)>,
    /// HEAD (1), objects (2), refs (4), commondir (8) seen.
    marks: u8,
}

impl Listing {
    /// A git directory as git recognises one: HEAD, and objects and refs,
    /// or commondir (a linked worktree's admin directory).
    fn is_gitdir(&self) -> bool {
        self.marks & 1 != 0 && (self.marks & 6 == 6 || self.marks & 8 != 0)
    }
}

/// lstat of `name` in the open directory `dir`; None when it is gone.
fn stat_at(
    dir: &OwnedFd,
    name: &CStr,
    path: &Path,
) -> Result<Option<nix::sys::stat::FileStat>, GuardError> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(io_err(path)(e.into())),
    }
}

/// Lexical normalisation (`.` and `..`), as git itself joins these paths.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
