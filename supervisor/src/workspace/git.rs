//! The git side of a workspace: open the source, resolve the ref, refuse
//! escaping symlinks, copy the objects and check out.
use super::WorkspaceError;
use git2::{build::CheckoutBuilder, ObjectType, Oid, Repository, RepositoryInitOptions};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::Path;

/// Git's mode for a symlink tree entry (S_IFLNK, gitformat-index(5)).
const GIT_MODE_SYMLINK: i32 = 0o120000;
/// Symlinks the kernel follows before ELOOP (MAXSYMLINKS, path_resolution(7)).
const MAX_SYMLINK_HOPS: usize = 40;

pub(super) fn open_source(repo: &Path) -> Result<Repository, WorkspaceError> {
    // NO_SEARCH: the path must be the repository itself, not any directory
    // that happens to sit inside one.
    Repository::open_ext(
        repo,
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(|source: git2::Error| WorkspaceError::OpenRepo {
        repo: repo.to_path_buf(),
        source: source.into(),
    })
}

pub(super) fn resolve_commit(
    src: &Repository,
    repo: &Path,
    git_ref: &str,
) -> Result<Oid, WorkspaceError> {
    src.revparse_single(git_ref)
        .and_then(|obj| obj.peel_to_commit())
        .map(|c| c.id())
        .map_err(|source: git2::Error| WorkspaceError::ResolveRef {
            repo: repo.to_path_buf(),
            git_ref: git_ref.to_string(),
            source: source.into(),
        })
}

/// Init the repository in the (empty) target, stream the commit's history
/// into it, detach HEAD at the commit and check it out.
pub(super) fn populate(
    src: &Repository,
    repo: &Path,
    commit: Oid,
    target: &Path,
    dir_mode: u32,
) -> Result<(), WorkspaceError> {
    let mut opts = RepositoryInitOptions::new();
    // Built-in template only: no hooks from the user's init.templateDir. An
    // explicit initial head keeps init from reading init.defaultBranch.
    opts.no_reinit(true)
        .mkdir(false)
        .external_template(false)
        .initial_head("aiops");
    let dst = Repository::init_opts(target, &opts).map_err(|source: git2::Error| {
        WorkspaceError::InitRepo {
            path: target.to_path_buf(),
            source: source.into(),
        }
    })?;
    let copy_err = |source: git2::Error| WorkspaceError::CopyObjects {
        repo: repo.to_path_buf(),
        path: target.to_path_buf(),
        commit: commit.to_string(),
        source: source.into(),
    };
    let mut walk = src.revwalk().map_err(copy_err)?;
    walk.push(commit).map_err(copy_err)?;
    let mut pack = src.packbuilder().map_err(copy_err)?;
    pack.insert_walk(&mut walk).map_err(copy_err)?;
    let odb = dst.odb().map_err(copy_err)?;
    let mut writer = odb.packwriter().map_err(copy_err)?;
    let mut write_failed = None;
    pack.foreach(|chunk| match writer.write_all(chunk) {
        Ok(()) => true,
        Err(e) => {
            write_failed = Some(e);
            false
        }
    })
    .map_err(copy_err)?;
    if let Some(e) = write_failed {
        return Err(copy_err(git2::Error::from_str(&e.to_string())));
    }
    writer.commit().map_err(copy_err)?;
    drop(pack);

    let checkout_err = |source: git2::Error| WorkspaceError::Checkout {
        path: target.to_path_buf(),
        commit: commit.to_string(),
        source: source.into(),
    };
    dst.set_head_detached(commit).map_err(checkout_err)?;
    dst.checkout_head(Some(
        CheckoutBuilder::new().force().dir_perm(dir_mode as i32),
    ))
    .map_err(checkout_err)
}

/// One tree entry as the checkout would write it.
enum Node {
    Dir,
    File,
    Link(Vec<u8>),
}

/// Refuse the commit if any symlink in its tree resolves outside the
/// workspace, following the tree's own symlinks as the kernel would.
pub(super) fn refuse_escaping_symlinks(
    src: &Repository,
    repo: &Path,
    commit: Oid,
) -> Result<(), WorkspaceError> {
    let read_err = |source: git2::Error| WorkspaceError::ReadTree {
        repo: repo.to_path_buf(),
        commit: commit.to_string(),
        source: source.into(),
    };
    let tree = src
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(read_err)?;
    // Own walk over name bytes: git2's walk gives up on non-UTF-8 paths.
    let mut nodes: HashMap<Vec<u8>, Node> = HashMap::new();
    let mut stack = vec![(Vec::new(), tree)];
    while let Some((prefix, tree)) = stack.pop() {
        for entry in tree.iter() {
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(entry.name_bytes());
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    let sub = src.find_tree(entry.id()).map_err(read_err)?;
                    nodes.insert(path.clone(), Node::Dir);
                    stack.push((path, sub));
                }
                Some(ObjectType::Blob) if entry.filemode() == GIT_MODE_SYMLINK => {
                    let blob = src.find_blob(entry.id()).map_err(read_err)?;
                    nodes.insert(path, Node::Link(blob.content().to_vec()));
                }
                // Blobs, and gitlinks (submodules), which check out as empty dirs.
                _ => {
                    nodes.insert(path, Node::File);
                }
            }
        }
    }
    for (path, node) in &nodes {
        if let Node::Link(target) = node {
            if escapes(&nodes, path, target) {
                return Err(WorkspaceError::EscapingSymlink {
                    path: String::from_utf8_lossy(path).into_owned(),
                    target: String::from_utf8_lossy(target).into_owned(),
                    commit: commit.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Whether the symlink at `link` (a '/'-joined tree path) with `target`
/// leaves the top of the tree. Components past a missing entry are taken
/// literally, which can only over-refuse.
fn escapes(nodes: &HashMap<Vec<u8>, Node>, link: &[u8], target: &[u8]) -> bool {
    let mut at: Vec<&[u8]> = link.split(|&b| b == b'/').collect();
    at.pop(); // the link's own name: resolution starts in its directory
    let mut todo: VecDeque<&[u8]> = VecDeque::new();
    let mut pending = Some(target);
    let mut hops = 0;
    loop {
        if let Some(t) = pending.take() {
            if t.first() == Some(&b'/') {
                return true;
            }
            for c in t.split(|&b| b == b'/').rev() {
                todo.push_front(c);
            }
        }
        let Some(c) = todo.pop_front() else {
            return false;
        };
        match c {
            b"" | b"." => {}
            b".." => {
                if at.pop().is_none() {
                    return true;
                }
            }
            name => {
                at.push(name);
                if let Some(Node::Link(t)) = nodes.get(&at.join(&b'/')) {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return false; // the kernel gives ELOOP: nothing is reached
                    }
                    at.pop();
                    pending = Some(t);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tree(entries: &[(&str, Option<&str>)]) -> HashMap<Vec<u8>, Node> {
        entries
            .iter()
            .map(|(p, link)| {
                let node = match link {
                    Some(t) => Node::Link(t.as_bytes().to_vec()),
                    None if p.ends_with('/') => Node::Dir,
                    None => Node::File,
                };
                (p.trim_end_matches('/').as_bytes().to_vec(), node)
            })
            .collect()
    }

    #[test]
    fn symlinks_inside_the_tree_do_not_escape() {
        let t = tree(&[
            ("a/", None),
            ("a/b", Some("../c")),
            ("c", None),
            ("d", Some("a/./b")),
        ]);
        assert!(!escapes(&t, b"a/b", b"../c"));
        assert!(!escapes(&t, b"d", b"a/./b"));
        assert!(!escapes(&t, b"a/x", b"../a/../c"));
    }

    #[test]
    fn absolute_and_dotdot_targets_escape() {
        let t = tree(&[("a/", None)]);
        assert!(escapes(&t, b"l", b"/etc/passwd"));
        assert!(escapes(&t, b"l", b".."));
        assert!(escapes(&t, b"a/l", b"../../x"));
        assert!(escapes(&t, b"a/l", b"missing/../../../x"));
    }

    #[test]
    fn dotdot_after_a_symlink_follows_the_link_first() {
        // Lexically p/p/p/.. is p/p (inside); really p is the top, so .. leaves it.
        let t = tree(&[("p", Some(".")), ("q", Some("p/p/p/.."))]);
        assert!(escapes(&t, b"q", b"p/p/p/.."));
        // A link through a link to an absolute target escapes too.
        let t = tree(&[("abs", Some("/tmp")), ("via", Some("abs/x"))]);
        assert!(escapes(&t, b"via", b"abs/x"));
    }

    #[test]
    fn symlink_loops_do_not_count_as_escapes() {
        let t = tree(&[("a", Some("b")), ("b", Some("a"))]);
        assert!(!escapes(&t, b"a", b"b"));
    }
}
