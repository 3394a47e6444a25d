//! Shells, `eval` and interpreters: scripts inside a command are linted
//! as commands, and downloads fed to an interpreter are flagged.
use super::parse::{self, RedirOp, SimpleCmd, Word};
use super::wrappers::effective_command;
use super::{name, rules, FindingKind, Linter};

const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh"];
const INTERPRETERS: &[&str] = &["python", "perl", "ruby", "node", "php"];
const FETCHERS: &[&str] = &["curl", "wget", "fetch"];

impl Linter<'_> {
    /// Run the command-specific rules; true when the arguments are scripts
    /// or text rather than paths (so they are not path-checked).
    pub(super) fn dispatch(
        &mut self,
        name: &str,
        cmd: &Word,
        args: &[Word],
        redirs: &[parse::Redir],
        depth: usize,
    ) -> bool {
        match name {
            "echo" | "printf" | "true" | "false" | ":" => true,
            "eval" => {
                if let (Some(f), Some(l)) = (args.first(), args.last()) {
                    let joined: Vec<&str> = args.iter().map(|w| w.value.as_str()).collect();
                    let joined = joined.join(" ");
                    let span = f.span.start..l.span.end;
                    let verbatim = if args.len() == 1 {
                        f.verbatim
                    } else {
                        (self.src.get(span.clone()) == Some(joined.as_str())).then_some(span.start)
                    };
                    let origin = Word {
                        value: joined.clone(),
                        span,
                        verbatim,
                        dynamic: false,
                    };
                    self.fetch_exec(cmd, args);
                    self.nested(&joined, &origin, depth);
                }
                true
            }
            "su" => {
                let msg = "`su` runs the command as another user".into();
                self.push(FindingKind::Escape, "privilege_escalation", cmd, msg);
                // `su [-] [user] -c CMD`: the option may follow the user.
                let c = args
                    .iter()
                    .position(|w| w.value == "-c" || w.value == "--command");
                match c.and_then(|i| args.get(i + 1)) {
                    Some(script) => self.nested(&script.value, script, depth),
                    None => return false,
                }
                true
            }
            // `busybox APPLET ARGS...` runs the applet.
            "busybox" => match args.split_first() {
                Some((applet, rest)) => {
                    self.dispatch(super::name(applet), applet, rest, redirs, depth)
                }
                None => true,
            },
            n if SHELLS.contains(&n) => self.shell(cmd, args, redirs, depth),
            "source" | "." => {
                self.fetch_exec(cmd, args);
                false
            }
            _ => {
                rules::command(self, name, cmd, args, depth);
                false
            }
        }
    }

    /// `sh [-opts] -c SCRIPT`, or a shell reading a here-document or
    /// here-string: lint the script. Returns true if one was found.
    fn shell(&mut self, cmd: &Word, args: &[Word], redirs: &[parse::Redir], depth: usize) -> bool {
        let mut i = 0;
        let mut script_next = false;
        while let Some(w) = args.get(i) {
            let v = w.value.as_str();
            i += 1;
            if v == "--" || !(v.starts_with('-') || v.starts_with('+')) || v.len() < 2 {
                if v != "--" {
                    i -= 1;
                }
                break;
            }
            if v == "-o" || v == "+o" {
                i += 1;
            } else if !v.starts_with("--") && v.contains('c') {
                script_next = true;
            }
        }
        self.fetch_exec(cmd, args);
        match args.get(i) {
            Some(script) if script_next => {
                self.nested(&script.value, script, depth);
                true
            }
            Some(_) => false,
            None => {
                for r in redirs {
                    match (r.op, &r.body) {
                        (RedirOp::HereDoc, Some(body)) => self.nested(&body.value, body, depth),
                        (RedirOp::HereString, _) => self.nested(&r.target.value, &r.target, depth),
                        _ => {}
                    }
                }
                false
            }
        }
    }

    /// `sh -c "$(curl ...)"`, `bash <(curl ...)`, `eval "$(wget ...)"`.
    fn fetch_exec(&mut self, cmd: &Word, args: &[Word]) {
        let fetched = args
            .iter()
            .any(|a| a.dynamic && FETCHERS.iter().any(|f| a.value.contains(&format!("{f} "))));
        if fetched {
            let msg = format!("`{}` executes a script downloaded at run time", cmd.value);
            self.push(FindingKind::Escape, "remote_code_execution", cmd, msg);
        }
    }

    /// `curl ... | sh`: a later stage of the same pipeline interprets what a
    /// fetcher downloaded.
    pub(super) fn remote_code_execution(&mut self, cmds: &[SimpleCmd]) {
        // Stages of a pipeline are parsed in order, so one pass suffices
        // (a quadratic scan would let a long command stall the supervisor).
        let mut fetching = std::collections::HashSet::new();
        for c in cmds {
            let Some(runner) = effective_command(&c.words) else {
                continue;
            };
            let n = name(runner);
            if FETCHERS.contains(&n) {
                fetching.insert(c.pipeline);
                continue;
            }
            let interprets = SHELLS.contains(&n) || INTERPRETERS.iter().any(|p| n.starts_with(p));
            if interprets && fetching.contains(&c.pipeline) {
                let msg = format!("`{n}` executes what was downloaded earlier in the pipeline");
                self.push(FindingKind::Escape, "remote_code_execution", runner, msg);
            }
        }
    }
}
