//! Static lint of shell commands: destructive operations and sandbox-escape
//! attempts, with spans.
//!
//! The supervisor's destructive-op gate and `aiopsctl lint` call this before
//! anything runs. It is advisory and errs towards flagging: a finding pauses
//! a node for confirmation, a miss lets it run. Spans are byte offsets into
//! the command as given (`lint_argv`: into the argv joined with spaces).
//! `RULES` lists every rule.
//!
//! Known limits: a `cd` inside a subshell is assumed to persist; command
//! names built at run time (`$CMD`), aliases and functions are not resolved;
//! code passed to other interpreters (`python -c`) and to remote hosts
//! (`ssh host cmd`) is not linted; `~` is not resolved, so home paths get
//! `sensitive_path` but not `outside_capabilities`.
mod catalog;
mod infra;
mod parse;
mod paths;
mod rules;
mod shells;
mod wrappers;

pub use catalog::{RuleInfo, RULES};

use crate::AbsPath;
use parse::{RedirOp, SimpleCmd, Word};
use serde::Serialize;
use std::ops::Range;
use wrappers::{name, skip_options, skip_prefix, unwrap_one};

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

/// Longest `cd` path tracked; beyond it the directory counts as unknown.
const MAX_CWD: usize = 4096;

/// Lint a `/bin/sh -c` command string.
pub fn lint_shell(command: &str, ctx: &LintContext) -> Vec<Finding> {
    let mut l = Linter {
        ctx,
        src: command,
        out: Vec::new(),
        cwd: None,
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
        cwd: None,
    };
    l.commands(&[cmd], 0);
    l.finish()
}

pub(crate) struct Linter<'c> {
    ctx: &'c LintContext<'c>,
    src: &'c str,
    out: Vec<Finding>,
    /// The directory a `cd` moved to, as written (and whether it holds an
    /// expansion); relative paths after it resolve against it.
    cwd: Option<(String, bool)>,
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
            self.track_cd(&c.words);
        }
        self.remote_code_execution(cmds);
    }

    /// `cd DIR` changes what later relative paths mean. Subshell scoping is
    /// not tracked: a `cd` inside `( )` is assumed to persist.
    fn track_cd(&mut self, words: &[Word]) {
        let Some(i) = wrappers::effective_command(words)
            .and_then(|c| words.iter().position(|w| std::ptr::eq(w, c)))
            .filter(|&i| matches!(words[i].value.as_str(), "cd" | "pushd"))
        else {
            return;
        };
        let args = &words[i + 1..];
        let target = args[skip_options(args, &[])..].first();
        let (dir, dynamic) = match target {
            None => ("~".to_string(), false),
            Some(t) if t.value == "-" => ("$OLDPWD".to_string(), true),
            Some(t) => (t.value.clone(), t.dynamic),
        };
        let rooted = dir.starts_with('/') || dir.starts_with('~') || dir.starts_with('$');
        self.cwd = match self.cwd.take() {
            Some((prev, prev_dyn)) if !rooted => {
                Some((format!("{prev}/{dir}"), prev_dyn || dynamic))
            }
            _ => Some((dir, dynamic)),
        };
        // Every later path is resolved against this string: bound it so that
        // many `cd`s cannot make linting quadratic.
        if self.cwd.as_ref().is_some_and(|(c, _)| c.len() > MAX_CWD) {
            self.cwd = Some(("$PWD".into(), true));
        }
    }

    /// Where a word points, relative paths resolved against the last `cd`.
    pub(crate) fn locate(&self, w: &Word) -> paths::Loc {
        self.locate_str(&w.value, w.dynamic)
    }

    pub(crate) fn locate_str(&self, v: &str, dynamic: bool) -> paths::Loc {
        let loc = paths::locate_str(v, dynamic);
        match (&loc, &self.cwd) {
            (paths::Loc::Rel { .. }, Some((cwd, cwd_dyn))) => {
                paths::locate_str(&format!("{cwd}/{v}"), dynamic || *cwd_dyn)
            }
            _ => loc,
        }
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
                // A child shell starts in our directory; its `cd` stays inside.
                let cwd = self.cwd.clone();
                self.commands(&cmds, depth + 1);
                self.cwd = cwd;
            }
        }
    }

    /// Strip assignments, reserved words and wrappers; lint what they run.
    fn command(&mut self, words: &[Word], redirs: &[parse::Redir], depth: usize) {
        for r in redirs {
            self.redirection(r);
        }
        let mut words = skip_prefix(words);
        while let Some((wr, inner)) = unwrap_one(words) {
            if wr.privileged {
                let msg = format!("`{}` runs the command with elevated privileges", wr.name);
                self.push(FindingKind::Escape, "privilege_escalation", &words[0], msg);
            }
            let lookup = words
                .get(1)
                .is_some_and(|w| w.value.starts_with("-v") || w.value.starts_with("-V"));
            if wr.name == "command" && lookup {
                return; // `command -v x` looks x up, it does not run it
            }
            if wr.name == "xargs" {
                if let Some(rm) = inner.first().filter(|w| name(w) == "rm") {
                    let msg = "`xargs rm` deletes paths read from input, which the lint cannot see";
                    self.push(FindingKind::Destructive, "xargs_rm", rm, msg.into());
                }
            }
            words = skip_prefix(inner);
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

    fn redirection(&mut self, r: &parse::Redir) {
        let t = &r.target;
        match r.op {
            RedirOp::HereDoc | RedirOp::HereString => return,
            RedirOp::Dup if t.value.bytes().all(|c| c.is_ascii_digit() || c == b'-') => return,
            _ => {}
        }
        let loc = self.locate(t);
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
            let loc = self.locate_str(cand, w.dynamic);
            if paths::is_dev_net(&loc) {
                let msg = format!("{cand} opens a network socket from the shell");
                return self.push(FindingKind::Escape, "network_redirection", w, msg);
            }
            if let Some(what) = paths::sensitive(&loc) {
                let msg = format!("{cand} names {what}");
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

#[cfg(test)]
#[path = "lint_tests.rs"]
mod tests;
