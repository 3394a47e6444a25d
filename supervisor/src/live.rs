//! Live checks done by `<jailer> probe`: unshare, a fresh /proc, cgroup
//! writes need a single-threaded process, so the jailer does them and prints
//! one JSON object. The parser is tolerant of extra or missing keys: a key
//! it cannot read is "unknown", never "ok".
use crate::facts::{Check, Status};
use aiops_policy::HostFacts;
use aiops_proto::probe;
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A probe that takes longer than this is treated as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// More output than this is not a probe report.
const MAX_PROBE_BYTES: u64 = 64 * 1024;

/// The keys `<jailer> probe` reports (`aiops_proto::probe::LIVE_KEYS`), in
/// display order, with their doctor labels.
pub const LIVE_KEYS: &[(&str, &str)] = &[
    (probe::LIVE_KEYS[0], "user namespaces (live)"),
    (probe::LIVE_KEYS[1], "network namespace"),
    (probe::LIVE_KEYS[2], "fresh /proc mount"),
    (probe::LIVE_KEYS[3], "seccomp (live)"),
    (probe::LIVE_KEYS[4], "cgroup v2 (live)"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveResult {
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveProbe {
    pub landlock_abi: Option<u8>,
    /// One entry per `LIVE_KEYS` key the probe reported in a readable form.
    pub results: Vec<(String, LiveResult)>,
}

impl LiveProbe {
    pub fn get(&self, key: &str) -> Option<&LiveResult> {
        self.results.iter().find(|(k, _)| k == key).map(|(_, r)| r)
    }

    /// Refine static facts: a live answer replaces the static guess.
    pub fn refine(&self, mut f: HostFacts) -> HostFacts {
        if let Some(abi) = self.landlock_abi {
            f.landlock_abi = abi;
        }
        let set = |key: &str, slot: &mut bool| {
            if let Some(r) = self.get(key) {
                *slot = r.ok;
            }
        };
        set("userns", &mut f.userns);
        set("netns", &mut f.netns);
        set("seccomp", &mut f.seccomp);
        set("cgroup_v2", &mut f.cgroup_v2);
        f
    }
}

/// Parse the probe's JSON object. Values may be `{ "ok": bool, "detail": str }`
/// or a bare bool; anything else for a key leaves it unknown.
pub fn parse_probe(text: &str) -> Result<LiveProbe, String> {
    let v: Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("probe output is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("probe output is not a JSON object")?;
    let landlock_abi = obj
        .get("landlock_abi")
        .and_then(Value::as_u64)
        .and_then(|n| u8::try_from(n).ok());
    let mut results = vec![];
    for (key, _) in LIVE_KEYS {
        let r = match obj.get(*key) {
            Some(Value::Bool(ok)) => Some(LiveResult {
                ok: *ok,
                detail: String::new(),
            }),
            Some(Value::Object(o)) => o.get("ok").and_then(Value::as_bool).map(|ok| LiveResult {
                ok,
                detail: o
                    .get("detail")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            }),
            _ => None,
        };
        if let Some(r) = r {
            results.push(((*key).to_string(), r));
        }
    }
    Ok(LiveProbe {
        landlock_abi,
        results,
    })
}

/// Run `<jailer> probe` with a clean environment and a time limit.
pub fn run_probe(jailer: &Path) -> Result<LiveProbe, String> {
    tracing::debug!(target: "aiops::facts", jailer = %jailer.display(), "running the live probe");
    let spawning = crate::exec::lock_spawns();
    let mut child = Command::new(jailer)
        .arg("probe")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {} probe: {e}", jailer.display()))?;
    drop(spawning);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() > PROBE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} probe timed out after {}s",
                    jailer.display(),
                    PROBE_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("wait for {} probe: {e}", jailer.display())),
        }
    };
    let mut out = String::new();
    if let Some(so) = child.stdout.take() {
        so.take(MAX_PROBE_BYTES)
            .read_to_string(&mut out)
            .map_err(|e| format!("read probe output: {e}"))?;
    }
    if !status.success() {
        let mut err = String::new();
        if let Some(se) = child.stderr.take() {
            let _ = se.take(4096).read_to_string(&mut err);
        }
        let first = err.lines().next().unwrap_or("").trim();
        return Err(format!(
            "{} probe failed ({status}){}",
            jailer.display(),
            if first.is_empty() {
                String::new()
            } else {
                format!(": {first}")
            }
        ));
    }
    if out.trim().is_empty() {
        return Err(format!(
            "{} probe printed nothing (a jailer without `probe`?)",
            jailer.display()
        ));
    }
    parse_probe(&out)
}

/// Doctor lines for the live checks; every key is `unknown` when the probe could not run.
pub fn live_checks(probe: &Result<LiveProbe, String>) -> Vec<Check> {
    LIVE_KEYS
        .iter()
        .map(|(key, label)| match probe {
            Err(_) => Check::new(
                Status::Unknown,
                label,
                "not checked: the live probe did not run",
            ),
            Ok(p) => match p.get(key) {
                None => Check::new(
                    Status::Unknown,
                    label,
                    "the jailer's probe did not report it",
                ),
                Some(r) if r.ok => Check::new(Status::Ok, label, detail_or(&r.detail, "works")),
                Some(r) => {
                    // cgroup delegation is optional: rlimits still bound the node.
                    let status = if *key == "cgroup_v2" {
                        Status::Warn
                    } else {
                        Status::Missing
                    };
                    Check::new(status, label, detail_or(&r.detail, "failed")).fix(live_fix(key))
                }
            },
        })
        .collect()
}

fn detail_or(d: &str, default: &str) -> String {
    if d.is_empty() {
        default.into()
    } else {
        d.into()
    }
}

fn live_fix(key: &str) -> &'static str {
    match key {
        "userns" => "see the static user namespaces line; inside a container, run it with --security-opt seccomp=unconfined or nest with userns allowed",
        "netns" => "network namespaces need CONFIG_NET_NS=y and a user namespace; in a container, allow unshare(CLONE_NEWNET)",
        "proc_mount" => "a fresh /proc is refused under a masked /proc (containers): run the container with an unmasked /proc (e.g. --security-opt systempaths=unconfined)",
        "seccomp" => "use a kernel built with CONFIG_SECCOMP_FILTER=y",
        _ => "run under a delegated cgroup (systemd-run --user --scope -p Delegate=yes)",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_probe_tolerantly() {
        let p = parse_probe(
            r#"{"landlock_abi": 7, "userns": {"ok": true, "detail": "unshare ok"},
            "netns": false, "proc_mount": {"ok": "yes"}, "extra": 1}"#,
        )
        .unwrap();
        assert_eq!(p.landlock_abi, Some(7));
        assert_eq!(
            p.get("userns"),
            Some(&LiveResult {
                ok: true,
                detail: "unshare ok".into()
            })
        );
        assert_eq!(p.get("netns").map(|r| r.ok), Some(false));
        assert_eq!(p.get("proc_mount"), None);
        assert_eq!(p.get("seccomp"), None);
        assert!(parse_probe("[1]").is_err());
        assert!(parse_probe("not json").is_err());
    }

    /// What the jailer prints (`aiops_proto::probe::ProbeReport`) reads in full.
    #[test]
    fn reads_every_key_the_jailer_reports() {
        use aiops_proto::probe::{ProbeCheck, ProbeReport};
        let c = |ok| ProbeCheck {
            ok,
            detail: "d".into(),
        };
        let r = ProbeReport {
            landlock_abi: 6,
            landlock: c(true),
            seccomp: c(true),
            userns: c(false),
            netns: c(true),
            proc_mount: c(true),
            apparmor_restrict_unprivileged_userns: c(true),
            cgroup_v2: c(false),
        };
        let p = parse_probe(&serde_json::to_string_pretty(&r).unwrap()).unwrap();
        assert_eq!(p.landlock_abi, Some(6));
        assert_eq!(p.results.len(), LIVE_KEYS.len());
        assert_eq!(p.get("userns").map(|r| r.ok), Some(false));
        assert_eq!(p.get("cgroup_v2").map(|r| r.ok), Some(false));
        assert_eq!(p.get("seccomp").map(|r| r.ok), Some(true));
    }

    #[test]
    fn unknown_is_never_reported_as_ok() {
        let checks = live_checks(&Err("jailer not found: tried /x (absent)".into()));
        assert_eq!(checks.len(), LIVE_KEYS.len());
        assert!(checks
            .iter()
            .all(|c| c.status == Status::Unknown && c.detail.contains("not checked")));
        let p = parse_probe(
            r#"{"userns": {"ok": true, "detail": ""}, "netns": {"ok": false, "detail": "EPERM"}}"#,
        )
        .unwrap();
        let checks = live_checks(&Ok(p));
        let by = |k: &str| {
            checks
                .iter()
                .find(|c| c.what.starts_with(k))
                .unwrap()
                .status
        };
        assert_eq!(by("user"), Status::Ok);
        assert_eq!(by("network"), Status::Missing);
        assert_eq!(by("fresh"), Status::Unknown);
    }

    #[test]
    fn live_answers_replace_static_guesses() {
        let p =
            parse_probe(r#"{"landlock_abi": 3, "netns": {"ok": false, "detail": "x"}}"#).unwrap();
        let f = p.refine(HostFacts::linux(7));
        assert_eq!(f.landlock_abi, 3);
        assert!(!f.netns && f.userns);
    }

    #[test]
    fn a_failing_or_silent_probe_is_an_error() {
        assert!(run_probe(Path::new("/bin/false"))
            .unwrap_err()
            .contains("probe failed"));
        assert!(run_probe(Path::new("/nonexistent/aiops-jailer"))
            .unwrap_err()
            .contains("cannot run"));
        assert!(run_probe(Path::new("/bin/true"))
            .unwrap_err()
            .contains("printed nothing"));
        // /bin/echo prints "probe", which is not JSON.
        assert!(run_probe(Path::new("/bin/echo"))
            .unwrap_err()
            .contains("not JSON"));
    }
}
