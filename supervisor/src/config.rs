//! `supervisor.toml`: strict and versioned like profiles (unknown keys and
//! a missing or newer `schema` are errors naming file, line and field), and
//! the defaults both the daemon and the in-process `aiopsctl run` use.
use crate::error::SupervisorError;
use aiops_policy::units::Dur;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const SYSTEM_CONFIG: &str = "/etc/aiops/supervisor.toml";
pub const CONFIG_SCHEMA: u32 = 1;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub schema: u32,
    pub state_dir: Option<PathBuf>,
    pub workspace_root: Option<PathBuf>,
    pub parallelism: Option<usize>,
    pub drain_grace: Option<Dur>,
    /// Let the daemon run nodes whose profile is `unconfined` (no jail).
    #[serde(default)]
    pub allow_unconfined: bool,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub jailer: JailerSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    pub socket: Option<PathBuf>,
    pub admin_group: Option<String>,
    pub tcp: Option<SocketAddr>,
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub allow_non_loopback: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JailerMode {
    /// Run aiops-jailer as our child (local mode).
    #[default]
    Exec,
    /// Ask the socket-activated aiops-jailer@.service (system mode).
    Socket,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailerSection {
    #[serde(default)]
    pub mode: JailerMode,
    pub socket: Option<PathBuf>,
}

/// The settings in force, defaults filled in.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub workspace_root: PathBuf,
    pub parallelism: usize,
    pub drain_grace: std::time::Duration,
    pub allow_unconfined: bool,
    pub api_socket: PathBuf,
    pub admin_group: String,
    pub tcp: Option<SocketAddr>,
    pub token_file: Option<PathBuf>,
    pub allow_non_loopback: bool,
    pub jailer_mode: JailerMode,
    pub jailer_socket: PathBuf,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// systemd's `StateDirectory=`, else root's /var/lib/aiops (root's home is
/// out of a jail's reach), else `$XDG_STATE_HOME/aiops`, else
/// `~/.local/state/aiops`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = env_path("STATE_DIRECTORY") {
        return d;
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/aiops");
    }
    if let Some(d) = env_path("XDG_STATE_HOME") {
        return d.join("aiops");
    }
    env_path("HOME")
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(".local/state/aiops")
}

/// `$AIOPS_API_SOCKET`, systemd's `RuntimeDirectory=`, root's
/// /run/aiops, `$XDG_RUNTIME_DIR/aiops`, else the state directory.
pub fn default_api_socket(state_dir: &Path) -> PathBuf {
    if let Some(p) = env_path("AIOPS_API_SOCKET") {
        return p;
    }
    if let Some(d) = env_path("RUNTIME_DIRECTORY") {
        return d.join("api.sock");
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/aiops/api.sock");
    }
    if let Some(d) = env_path("XDG_RUNTIME_DIR") {
        return d.join("aiops/api.sock");
    }
    state_dir.join("api.sock")
}

impl Config {
    /// `path`, else /etc/aiops/supervisor.toml when it exists, else defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, SupervisorError> {
        let system = Path::new(SYSTEM_CONFIG);
        let chosen = match path {
            Some(p) => Some(p.to_path_buf()),
            None if system.exists() => Some(system.to_path_buf()),
            None => None,
        };
        let file = match &chosen {
            Some(p) => {
                let text = aiops_policy::error::read_input(p, "configuration")?;
                Self::parse(p, &text)?
            }
            None => ConfigFile {
                schema: CONFIG_SCHEMA,
                ..ConfigFile::default()
            },
        };
        let mut cfg = Self::resolve(chosen, file);
        if path.is_none() && cfg.source.is_some() {
            cfg.as_client_of_the_daemon();
        }
        Ok(cfg)
    }

    /// Root reading the daemon's state while no daemon answers (`status`,
    /// `logs`, `audit`): the files are the daemon user's, 0600, and root
    /// must not create root-owned ones among them (SQLite's -wal/-shm), so
    /// this process becomes that user first. Nothing happens unless we are
    /// root and the state directory belongs to another uid.
    #[cfg(not(target_os = "linux"))]
    pub fn read_as_state_owner(&self) -> Result<(), SupervisorError> {
        Ok(())
    }

    /// (Linux: see above.)
    #[cfg(target_os = "linux")]
    pub fn read_as_state_owner(&self) -> Result<(), SupervisorError> {
        use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            return Ok(());
        }
        let Ok(meta) = std::fs::metadata(&self.state_dir) else {
            return Ok(());
        };
        if meta.uid() == 0 {
            return Ok(());
        }
        let (uid, gid) = (Uid::from_raw(meta.uid()), Gid::from_raw(meta.gid()));
        setgroups(&[])
            .and_then(|()| setresgid(gid, gid, gid))
            .and_then(|()| setresuid(uid, uid, uid))
            .map_err(|e| SupervisorError::StateDir {
                path: self.state_dir.clone(),
                source: std::io::Error::other(format!(
                    "become its owner (uid {uid}) to read it: {e}"
                )),
            })
    }

    /// The system configuration, read by someone other than the daemon's
    /// user (or root): its state directory is the daemon's, not theirs.
    /// The daemon is still reached on `api_socket`; when it does not serve
    /// this user, `aiopsctl run` runs locally as in local mode: the user's
    /// own state directory and workspaces, the jailer exec'd directly.
    fn as_client_of_the_daemon(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let euid = nix::unistd::geteuid();
        let theirs = std::fs::metadata(&self.state_dir).is_ok_and(|m| m.uid() != euid.as_raw());
        if euid.is_root() || !theirs {
            return;
        }
        self.state_dir = default_state_dir();
        self.workspace_root = self.state_dir.join("workspaces");
        self.jailer_mode = JailerMode::Exec;
    }

    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, SupervisorError> {
        let file: ConfigFile = aiops_policy::error::from_toml(path, text)?;
        let bad = |reason: String| SupervisorError::Invalid {
            what: path.display().to_string(),
            reason,
        };
        if file.schema != CONFIG_SCHEMA {
            return Err(bad(format!(
                "schema: {} is not supported (this aiops reads schema {CONFIG_SCHEMA})",
                file.schema
            )));
        }
        if file.parallelism == Some(0) || file.parallelism.is_some_and(|p| p > 256) {
            return Err(bad("parallelism: must be between 1 and 256".into()));
        }
        for (field, p) in [
            ("state_dir", &file.state_dir),
            ("workspace_root", &file.workspace_root),
            ("api.socket", &file.api.socket),
            ("api.token_file", &file.api.token_file),
            ("jailer.socket", &file.jailer.socket),
        ] {
            if p.as_ref().is_some_and(|p| !p.is_absolute()) {
                return Err(bad(format!("{field}: must be an absolute path")));
            }
        }
        if file.api.tcp.is_some() && file.api.token_file.is_none() {
            return Err(bad(
                "api.tcp: a TCP listener needs api.token_file (bearer token)".into(),
            ));
        }
        Ok(file)
    }

    pub fn resolve(source: Option<PathBuf>, f: ConfigFile) -> Config {
        let state_dir = f.state_dir.unwrap_or_else(default_state_dir);
        Config {
            source,
            workspace_root: f
                .workspace_root
                .unwrap_or_else(|| state_dir.join("workspaces")),
            parallelism: f.parallelism.unwrap_or(2),
            drain_grace: f
                .drain_grace
                .map_or(std::time::Duration::from_secs(30), |d| d.as_std()),
            allow_unconfined: f.allow_unconfined,
            api_socket: f
                .api
                .socket
                .unwrap_or_else(|| default_api_socket(&state_dir)),
            admin_group: f.api.admin_group.unwrap_or_else(|| "aiops-admin".into()),
            tcp: f.api.tcp,
            token_file: f.api.token_file,
            allow_non_loopback: f.api.allow_non_loopback,
            jailer_mode: f.jailer.mode,
            jailer_socket: f
                .jailer
                .socket
                .unwrap_or_else(|| PathBuf::from("/run/aiops/jailer.sock")),
            state_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_name_the_field() {
        let p = Path::new("/etc/aiops/supervisor.toml");
        let e = Config::parse(p, "schema = 1\nparallel = 2\n")
            .err()
            .unwrap();
        let msg = crate::error::error_chain(&e);
        assert!(
            msg.contains("supervisor.toml:2") && msg.contains("parallel"),
            "{msg}"
        );
        let e = Config::parse(p, "schema = 2\n").err().unwrap();
        assert!(e.to_string().contains("schema"), "{e}");
        let e = Config::parse(p, "schema = 1\nparallelism = 0\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("parallelism"), "{e}");
        let e = Config::parse(p, "schema = 1\nstate_dir = \"rel\"\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("state_dir"), "{e}");
        let e = Config::parse(p, "schema = 1\n[api]\ntcp = \"127.0.0.1:8787\"\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("token_file"), "{e}");
    }

    #[test]
    fn the_shipped_config_parses() {
        let p = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packaging/etc/supervisor.toml"
        ));
        let text = std::fs::read_to_string(p).unwrap();
        let c = Config::resolve(None, Config::parse(p, &text).unwrap());
        assert_eq!(c.jailer_mode, JailerMode::Socket);
        assert_eq!(c.state_dir, Path::new("/var/lib/aiops"));
    }

    #[test]
    fn defaults_fill_in() {
        let f = Config::parse(
            Path::new("/x.toml"),
            "schema = 1\nstate_dir = \"/srv/aiops\"\ndrain_grace = \"5s\"\n[jailer]\nmode = \"socket\"\n",
        )
        .unwrap();
        let c = Config::resolve(None, f);
        assert_eq!(c.workspace_root, Path::new("/srv/aiops/workspaces"));
        assert_eq!(c.parallelism, 2);
        assert_eq!(c.drain_grace, std::time::Duration::from_secs(5));
        assert_eq!(c.jailer_mode, JailerMode::Socket);
    }
}
