//! Words that run other commands: wrappers (`sudo`, `env`, `timeout`,
//! `xargs`...), assignments and reserved words, and how to see past them.
use super::parse::Word;

/// Words that open or close compound commands; the command follows them.
pub(super) const RESERVED: &[&str] = &[
    "{", "}", "!", "if", "then", "else", "elif", "fi", "do", "done", "while", "until",
];

/// The command name as invoked: `/usr/bin/rm` and `\rm` are `rm`.
pub(crate) fn name(w: &Word) -> &str {
    w.value.rsplit('/').next().unwrap_or(&w.value)
}

pub(super) fn is_assignment(w: &Word) -> bool {
    w.value
        .split_once('=')
        .is_some_and(|(n, _)| crate::EnvName::parse(n).is_ok() && !w.value.starts_with('='))
}

/// A wrapper runs the rest of its argv as a command: its options (those
/// that take a value listed), then `skip` fixed operands (timeout's duration).
pub(super) struct Wrapper {
    pub(super) name: &'static str,
    pub(super) valued: &'static [&'static str],
    pub(super) skip: usize,
    pub(super) privileged: bool,
}
pub(super) const WRAPPERS: &[Wrapper] = &[
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

/// Drop leading assignments (`X=1`) and reserved words (`if`, `{`, `!`).
pub(super) fn skip_prefix(mut words: &[Word]) -> &[Word] {
    while words
        .first()
        .is_some_and(|w| is_assignment(w) || (!w.dynamic && RESERVED.contains(&w.value.as_str())))
    {
        words = &words[1..];
    }
    // `function NAME { ...`: the body's first command follows the name.
    match words.first() {
        Some(f) if f.value == "function" && !f.dynamic => {
            skip_prefix(words.get(2..).unwrap_or(&[]))
        }
        _ => words,
    }
}

/// If `words` starts with a wrapper, the wrapper and the command it runs.
pub(super) fn unwrap_one(words: &[Word]) -> Option<(&'static Wrapper, &[Word])> {
    let first = words.first()?;
    let wr = WRAPPERS.iter().find(|wr| wr.name == name(first))?;
    let rest = &words[1..];
    let at = (skip_options(rest, wr.valued) + wr.skip).min(rest.len());
    Some((wr, &rest[at..]))
}

/// The word naming what a simple command really runs, past assignments,
/// reserved words and wrappers.
pub(super) fn effective_command(words: &[Word]) -> Option<&Word> {
    let mut words = skip_prefix(words);
    while let Some((_, inner)) = unwrap_one(words) {
        words = skip_prefix(inner);
    }
    words.first()
}
