//! Static lint of shell commands: destructive operations and sandbox-escape
//! attempts, with spans.
//!
//! The supervisor's destructive-op gate and `aiopsctl lint` call this before
//! anything runs. It is advisory and errs towards flagging: a finding pauses
//! a node for confirmation, a miss lets it run. Spans are byte offsets into
//! the command as given (`lint_argv`: into the argv joined with spaces).
mod parse;
mod paths;
mod rules;

use crate::AbsPath;
use parse::{RedirOp, SimpleCmd, Word};
use serde::Serialize;
use std::ops::Range;

/// What the lint may assume about where the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LintContext<'a> {
    /// The working directory; relative paths resolve against it.
    pub workspace: Option<&'a AbsPath>,
    pub readable: &'a [AbsPath],
    pub writable: &'a [AbsPath],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Loses data or state outside the jail's undo (workspace reset).
    Destructive,
    /// Tries to reach past the sandbox: secrets, host runtime, privileges.
    Escape,
    /// The command could not be parsed; treat it as needing confirmation.
    Unparsed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// Stable snake_case rule name, e.g. `rm_recursive_outside_workspace`.
    pub rule: &'static str,
    pub message: String,
    /// Byte offsets of the offending word in the command.
    pub span: Range<usize>,
}

/// `sh -c` inside `bash -c` inside `eval`...: deeper nesting is reported
/// as unparsed rather than followed.
const MAX_NESTING: usize = 8;

/// Lint a `/bin/sh -c` command string.
pub fn lint_shell(command: &str, ctx: &LintContext) -> Vec<Finding> {
    let mut l = Linter {
        ctx,
        src: command,
        out: Vec::new(),
    };
    match parse::parse(command) {
        Ok(cmds) => l.commands(&cmds, 0),
        Err(e) => l.unparsed(&e.message, e.span),
    }
    l.finish()
}

/// Lint an exec'd argv (no shell: nothing is expanded or split).
pub fn lint_argv(argv: &[String], ctx: &LintContext) -> Vec<Finding> {
    let joined = argv.join(" ");
    let mut words = Vec::with_capacity(argv.len());
    let mut at = 0;
    for a in argv {
        words.push(Word {
            value: a.clone(),
            span: at..at + a.len(),
            verbatim: Some(at),
            dynamic: false,
        });
        at += a.len() + 1;
    }
    let cmd = SimpleCmd {
        words,
        redirs: Vec::new(),
        pipeline: 0,
        stage: 0,
    };
    let mut l = Linter {
        ctx,
        src: &joined,
        out: Vec::new(),
    };
    l.commands(&[cmd], 0);
    l.finish()
}

pub(crate) struct Linter<'c> {
    ctx: &'c LintContext<'c>,
    src: &'c str,
    out: Vec<Finding>,
}

/// Words that open or close compound commands; the command follows them.
const RESERVED: &[&str] = &[
    "{", "}", "!", "if", "then", "else", "elif", "fi", "do", "done", "while", "until",
];
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "busybox"];
const INTERPRETERS: &[&str] = &["python", "perl", "ruby", "node", "php"];
const FETCHERS: &[&str] = &["curl", "wget", "fetch"];

/// The command name as invoked: `/usr/bin/rm` and `\rm` are `rm`.
pub(crate) fn name(w: &Word) -> &str {
    w.value.rsplit('/').next().unwrap_or(&w.value)
}

fn is_assignment(w: &Word) -> bool {
    w.value
        .split_once('=')
        .is_some_and(|(n, _)| crate::EnvName::parse(n).is_ok() && !w.value.starts_with('='))
}

/// A wrapper runs the rest of its argv as a command: its options (those
/// that take a value listed), then `skip` fixed operands (timeout's duration).
struct Wrapper {
    name: &'static str,
    valued: &'static [&'static str],
    skip: usize,
    privileged: bool,
}
const WRAPPERS: &[Wrapper] = &[
    Wrapper {
        name: "sudo",
        valued: &[
            "-u",
            "-g",
            "-h",
            "-p",
            "-C",
            "-U",
            "-r",
            "-t",
            "-D",
            "-R",
            "-T",
            "--user",
            "--group",
            "--host",
            "--prompt",
            "--chdir",
            "--chroot",
            "--role",
            "--type",
            "--other-user",
            "--close-from",
            "--command-timeout",
        ],
        skip: 0,
        privileged: true,
    },
    Wrapper {
        name: "doas",
        valued: &["-u", "-C"],
        skip: 0,
        privileged: true,
    },
    Wrapper {
        name: "pkexec",
        valued: &["--user"],
        skip: 0,
        privileged: true,
    },
    Wrapper {
        name: "env",
        valued: &["-u", "--unset", "-C", "--chdir", "-S", "--split-string"],
        skip: 0,
        privileged: false,
    },
    Wrapper {
        name: "nohup",
        valued: &[],
        skip: 0,
        privileged: false,
    },
    Wrapper {
        name: "time",
        valued: &["-f", "--format", "-o", "--output"],
        skip: 0,
        privileged: false,
    },
    Wrapper {
        name: "nice",
        valued: &["-n", "--adjustment"],
        skip: 0,
        privileged: false,
    },
    Wrapper {
        name: "timeout",
        valued: &["-s", "--signal", "-k", "--kill-after"],
        skip: 1,
        privileged: false,
    },
    Wrapper {
        name: "stdbuf",
        valued: &["-i", "-o", "-e"],
        skip: 0,
        privileged: false,
    },
    Wrapper {
        name: "ionice",
        valued: &["-c", "-n", "-p", "-P", "-u"],
        skip: 0,
        privileged: false,
    },
    Wrapper {
        name: "setsid",
        valued: &[],
        skip: 0,
        privileged: false,
    },
    Wrapper {
        name: "exec",
        valued: &["-a"],
        skip: 0,
        privileged: false,
    },
    Wrapper {
        name: "command",
        valued: &[],
        skip: 0,
        privileged: false,
    },
    Wrapper {
        name: "builtin",
        valued: &[],
        skip: 0,
        privileged: false,
    },
    Wrapper {
        name: "xargs",
        valued: &[
            "-a",
            "--arg-file",
            "-d",
            "--delimiter",
            "-E",
            "-I",
            "-L",
            "--max-lines",
            "-n",
            "--max-args",
            "-P",
            "--max-procs",
            "-s",
            "--max-chars",
        ],
        skip: 0,
        privileged: false,
    },
];

/// Index of the first operand after options; `valued` options consume the next word.
pub(crate) fn skip_options(words: &[Word], valued: &[&str]) -> usize {
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let v = w.value.as_str();
        if v == "--" {
            return i + 1;
        }
        if !v.starts_with('-') || v == "-" {
            break;
        }
        i += if valued.contains(&v) { 2 } else { 1 };
    }
    i.min(words.len())
}

impl Linter<'_> {
    fn finish(mut self) -> Vec<Finding> {
        self.out.sort_by(|a, b| {
            (a.span.start, a.span.end, a.rule).cmp(&(b.span.start, b.span.end, b.rule))
        });
        self.out
            .dedup_by(|a, b| a.rule == b.rule && a.span == b.span);
        self.out
    }

    pub(crate) fn push(
        &mut self,
        kind: FindingKind,
        rule: &'static str,
        w: &Word,
        message: String,
    ) {
        self.out.push(Finding {
            kind,
            rule,
            message,
            span: w.span.clone(),
        });
    }

    fn unparsed(&mut self, why: &str, span: Range<usize>) {
        let message = format!("cannot parse the command ({why}); it needs confirmation");
        self.out.push(Finding {
            kind: FindingKind::Unparsed,
            rule: "unparsed",
            message,
            span,
        });
    }

    fn commands(&mut self, cmds: &[SimpleCmd], depth: usize) {
        for c in cmds {
            self.command(&c.words, &c.redirs, depth);
        }
        self.remote_code_execution(cmds);
    }

    /// Lint `script` found inside `origin` (a `sh -c` or `eval` argument).
    pub(crate) fn nested(&mut self, script: &str, origin: &Word, depth: usize) {
        if depth >= MAX_NESTING {
            return self.unparsed("nesting too deep", origin.span.clone());
        }
        let remap = |span: Range<usize>| match origin.verbatim {
            Some(v) => span.start + v..span.end + v,
            None => origin.span.clone(),
        };
        match parse::parse(script) {
            Err(e) => self.unparsed(&e.message, origin.span.clone()),
            Ok(mut cmds) => {
                let words = cmds.iter_mut().flat_map(|c| {
                    let targets = c
                        .redirs
                        .iter_mut()
                        .flat_map(|r| std::iter::once(&mut r.target).chain(r.body.as_mut()));
                    c.words.iter_mut().chain(targets)
                });
                for w in words {
                    w.span = remap(w.span.clone());
                    w.verbatim = match (origin.verbatim, w.verbatim) {
                        (Some(v), Some(x)) => Some(x + v),
                        _ => None,
                    };
                }
                self.commands(&cmds, depth + 1);
            }
        }
    }

    /// Strip assignments, reserved words and wrappers; lint what they run.
    fn command(&mut self, words: &[Word], redirs: &[parse::Redir], depth: usize) {
        for r in redirs {
            self.redirection(r);
        }
        let mut words = words;
        loop {
            while words.first().is_some_and(|w| {
                is_assignment(w) || (!w.dynamic && RESERVED.contains(&w.value.as_str()))
            }) {
                words = &words[1..];
            }
            let Some(first) = words.first() else { return };
            let Some(wr) = WRAPPERS.iter().find(|wr| wr.name == name(first)) else {
                break;
            };
            if wr.privileged {
                let msg = format!("`{}` runs the command with elevated privileges", wr.name);
                self.push(FindingKind::Escape, "privilege_escalation", first, msg);
            }
            if wr.name == "command"
                && words
                    .get(1)
                    .is_some_and(|w| w.value.starts_with("-v") || w.value.starts_with("-V"))
            {
                return; // `command -v x` looks x up, it does not run it
            }
            let rest = &words[1..];
            let inner = &rest[(skip_options(rest, wr.valued) + wr.skip).min(rest.len())..];
            if wr.name == "xargs" {
                if let Some(rm) = inner.first().filter(|w| name(w) == "rm") {
                    let msg = "`xargs rm` deletes paths read from input, which the lint cannot see"
                        .into();
                    self.push(FindingKind::Destructive, "xargs_rm", rm, msg);
                }
            }
            words = inner;
        }
        let (cmd, args) = match words.split_first() {
            Some(x) => x,
            None => return,
        };
        let consumed = self.dispatch(name(cmd), cmd, args, redirs, depth);
        if !consumed {
            for a in args {
                self.path_word(a);
            }
        }
    }

    /// Run the command-specific rules; true when the arguments are scripts
    /// or text rather than paths (so they are not path-checked).
    fn dispatch(
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
                self.shell(cmd, args, redirs, depth)
            }
            n if SHELLS.contains(&n) => {
                let args = if n == "busybox"
                    && args
                        .first()
                        .is_some_and(|a| SHELLS.contains(&a.value.as_str()))
                {
                    &args[1..]
                } else {
                    args
                };
                self.shell(cmd, args, redirs, depth)
            }
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
    fn remote_code_execution(&mut self, cmds: &[SimpleCmd]) {
        for (i, c) in cmds.iter().enumerate() {
            let Some(runner) = effective_command(&c.words) else {
                continue;
            };
            let n = name(runner);
            let interprets = SHELLS.contains(&n) || INTERPRETERS.iter().any(|p| n.starts_with(p));
            let fed = cmds[..i].iter().any(|p| {
                p.pipeline == c.pipeline
                    && p.stage < c.stage
                    && effective_command(&p.words).is_some_and(|f| FETCHERS.contains(&name(f)))
            });
            if interprets && fed {
                let msg = format!("`{n}` executes what was downloaded earlier in the pipeline");
                self.push(FindingKind::Escape, "remote_code_execution", runner, msg);
            }
        }
    }

    fn redirection(&mut self, r: &parse::Redir) {
        let t = &r.target;
        match r.op {
            RedirOp::HereDoc | RedirOp::HereString => return,
            RedirOp::Dup if t.value.bytes().all(|c| c.is_ascii_digit() || c == b'-') => return,
            _ => {}
        }
        let loc = paths::locate(t);
        if r.op == RedirOp::Truncate && paths::is_system(&loc) {
            let msg = format!("`>` truncates the system path {}", t.value);
            self.push(
                FindingKind::Destructive,
                "redirect_truncates_system_path",
                t,
                msg,
            );
        }
        self.path_word(t);
    }

    /// Escape checks on one argument or redirection target.
    pub(crate) fn path_word(&mut self, w: &Word) {
        for cand in paths::candidates(&w.value) {
            let loc = paths::locate_str(cand, w.dynamic);
            if paths::is_dev_net(&loc) {
                let msg = format!("{cand} opens a network socket from the shell");
                return self.push(FindingKind::Escape, "network_redirection", w, msg);
            }
            if let Some(what) = paths::sensitive(&loc) {
                let msg = format!("{cand} is {what}");
                return self.push(FindingKind::Escape, "sensitive_path", w, msg);
            }
            let allowed: Vec<&AbsPath> =
                self.ctx.readable.iter().chain(self.ctx.writable).collect();
            if allowed.is_empty() || paths::is_harmless_device(&loc) {
                continue;
            }
            let Some(abs) = paths::absolute(&loc, self.ctx.workspace) else {
                continue;
            };
            let inside = allowed
                .iter()
                .chain(&self.ctx.workspace)
                .any(|a| abs.starts_with(a.as_path()));
            if !inside {
                let msg = format!(
                    "{} is outside the node's readable and writable paths",
                    abs.display()
                );
                return self.push(FindingKind::Escape, "outside_capabilities", w, msg);
            }
        }
    }
}

/// The word naming what a simple command really runs, past assignments,
/// reserved words and wrappers.
fn effective_command(words: &[Word]) -> Option<&Word> {
    let mut words = words;
    loop {
        while words
            .first()
            .is_some_and(|w| is_assignment(w) || RESERVED.contains(&w.value.as_str()))
        {
            words = &words[1..];
        }
        let first = words.first()?;
        let Some(wr) = WRAPPERS.iter().find(|wr| wr.name == name(first)) else {
            return Some(first);
        };
        let rest = &words[1..];
        words = &rest[(skip_options(rest, wr.valued) + wr.skip).min(rest.len())..];
    }
}

#[cfg(test)]
#[path = "lint_tests.rs"]
mod tests;
