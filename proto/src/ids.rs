//! Who a jail runs as, decided once for the jailer, `aiopsctl exec` and the
//! engine: the owner of the plan's first writable bind (the workspace),
//! except that a jail is never host root: root's uid gives nobody, root's
//! group gives nogroup.
use crate::plan::{JailPlan, Mount};
use crate::AbsPath;

/// The uid and gid `nobody`/`nogroup` have on a stock Linux host.
pub const NOBODY: u32 = 65534;

/// The paths whose owner the jail may run as, in order: the writable
/// binds' sources. The first whose owner can be read decides.
pub fn identity_sources(plan: &JailPlan) -> impl Iterator<Item = &AbsPath> {
    plan.mounts.iter().filter_map(|m| match m {
        Mount::Bind {
            src,
            writable: true,
            ..
        } => Some(src),
        _ => None,
    })
}

/// The (uid, gid) a jail runs as, given its identity source's owner. Host
/// gid 0 would let the node read what root's group may read and leave
/// root-group files behind, so a user whose group is root gets nogroup.
pub fn jail_ids(owner: Option<(u32, u32)>) -> (u32, u32) {
    match owner {
        Some((uid, gid)) if uid != 0 => (uid, if gid == 0 { NOBODY } else { gid }),
        _ => (NOBODY, NOBODY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_host_root_or_host_root_group() {
        assert_eq!(jail_ids(Some((1000, 1000))), (1000, 1000));
        assert_eq!(jail_ids(Some((1000, 0))), (1000, NOBODY));
        assert_eq!(jail_ids(Some((0, 1000))), (NOBODY, NOBODY));
        assert_eq!(jail_ids(Some((0, 0))), (NOBODY, NOBODY));
        assert_eq!(jail_ids(None), (NOBODY, NOBODY));
    }
}
