//! The one rule for finding the helper executables, used by aiopsctl, the
//! daemon and the jailer (for agentd): an explicit `$AIOPS_JAILER` /
//! `$AIOPS_AGENTD` wins or fails (falling back would run a binary the
//! operator did not pick), else next to the running executable (a cargo
//! build, a tarball, or the package's libexec dir for the jailer itself),
//! else the package's libexec dir. Pure: callers check each candidate.
use std::path::{Path, PathBuf};

/// Where the distro package installs the helpers.
pub const LIBEXEC_DIR: &str = "/usr/libexec/aiops";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Helper {
    /// The executable's file name.
    pub name: &'static str,
    /// The environment variable that names it explicitly.
    pub env: &'static str,
}

pub const JAILER: Helper = Helper {
    name: "aiops-jailer",
    env: "AIOPS_JAILER",
};
pub const AGENTD: Helper = Helper {
    name: "aiops-agentd",
    env: "AIOPS_AGENTD",
};

/// Where to look, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// The environment named this path: use it or fail, nothing else.
    Override { path: PathBuf, via: String },
    /// Try each; the first that is an executable file wins.
    Candidates(Vec<(PathBuf, &'static str)>),
}

impl Helper {
    /// The search for this helper given the override's value, the running
    /// executable's directory (with how to name it, e.g. "next to
    /// aiopsctl") and the libexec dir.
    pub fn search(
        &self,
        env_value: Option<PathBuf>,
        exe_dir: Option<(&Path, &'static str)>,
        libexec: &Path,
    ) -> Search {
        if let Some(path) = env_value {
            return Search::Override {
                path,
                via: format!("${}", self.env),
            };
        }
        let mut c: Vec<(PathBuf, &'static str)> = exe_dir
            .map(|(d, via)| (d.join(self.name), via))
            .into_iter()
            .collect();
        let lib = libexec.join(self.name);
        if !c.iter().any(|(p, _)| *p == lib) {
            c.push((lib, LIBEXEC_DIR));
        }
        Search::Candidates(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_is_final_and_the_rest_keep_their_order() {
        let s = AGENTD.search(
            Some("/x/a".into()),
            Some((Path::new("/b"), "here")),
            Path::new("/l"),
        );
        assert_eq!(
            s,
            Search::Override {
                path: "/x/a".into(),
                via: "$AIOPS_AGENTD".into()
            }
        );
        let Search::Candidates(c) =
            JAILER.search(None, Some((Path::new("/b"), "here")), Path::new("/l"))
        else {
            panic!("candidates expected")
        };
        let paths: Vec<_> = c.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            paths,
            [PathBuf::from("/b/aiops-jailer"), "/l/aiops-jailer".into()]
        );
        let Search::Candidates(c) =
            JAILER.search(None, Some((Path::new("/l"), "here")), Path::new("/l"))
        else {
            panic!("candidates expected")
        };
        assert_eq!(c.len(), 1, "{c:?}");
    }
}
