//! Just enough of git-config(1) syntax to find `core.hooksPath`,
//! `core.worktree` and include paths: sections (`[a]`, `[a "sub"]`,
//! `[a.sub]`), case-insensitive names, quoted values with escapes,
//! comments, and line continuations. A file that cannot be read yields
//! nothing: git would not read it either, and it is protected regardless.
use std::path::{Path, PathBuf};

/// Largest config file read; git configs are a few KiB.
const MAX_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `section.key` lower-cased, or `section.subsection.key` with the
    /// subsection as written (git compares it case-sensitively).
    pub key: String,
    pub value: String,
    /// The file it came from (include paths are relative to it).
    pub file: PathBuf,
}

pub fn read(path: &Path, out: &mut Vec<Entry>) {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(path) else {
        return;
    };
    let mut text = String::new();
    if f.take(MAX_BYTES).read_to_string(&mut text).is_err() {
        return;
    }
    parse(&text, path, out);
}

pub fn parse(text: &str, file: &Path, out: &mut Vec<Entry>) {
    let mut section = String::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        // One logical line: a value's continuation lines are consumed by `value`.
        skip_blank(&mut chars);
        match chars.peek() {
            None => break,
            Some('#' | ';') => skip_line(&mut chars),
            Some('\n') => {
                chars.next();
            }
            Some('[') => {
                chars.next();
                section = header(&mut chars);
            }
            Some(_) => {
                let name: String =
                    take_while(&mut chars, |c| c.is_ascii_alphanumeric() || c == '-');
                skip_blank(&mut chars);
                let value = match chars.peek() {
                    Some('=') => {
                        chars.next();
                        value(&mut chars)
                    }
                    _ => {
                        skip_line(&mut chars);
                        continue; // a boolean or garbage: nothing we look for
                    }
                };
                if name.is_empty() || section.is_empty() {
                    continue;
                }
                out.push(Entry {
                    key: format!("{section}.{}", name.to_ascii_lowercase()),
                    value,
                    file: file.into(),
                });
            }
        }
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn skip_blank(c: &mut Chars) {
    while c
        .peek()
        .is_some_and(|&x| x == ' ' || x == '\t' || x == '\r')
    {
        c.next();
    }
}

fn skip_line(c: &mut Chars) {
    for x in c.by_ref() {
        if x == '\n' {
            break;
        }
    }
}

fn take_while(c: &mut Chars, f: impl Fn(char) -> bool) -> String {
    let mut s = String::new();
    while let Some(&x) = c.peek() {
        if !f(x) {
            break;
        }
        s.push(x);
        c.next();
    }
    s
}

/// After `[`: `name]`, `name "sub"]` or `name.sub]`; the rest of the line
/// may hold a `key = value` (git allows `[core] hooksPath = x`).
fn header(c: &mut Chars) -> String {
    let name = take_while(c, |x| x.is_ascii_alphanumeric() || x == '-' || x == '.');
    let mut out = name.to_ascii_lowercase();
    skip_blank(c);
    if c.peek() == Some(&'"') {
        c.next();
        let mut sub = String::new();
        while let Some(x) = c.next() {
            match x {
                '\\' => {
                    if let Some(y) = c.next() {
                        sub.push(y);
                    }
                }
                '"' => break,
                '\n' => return String::new(),
                x => sub.push(x),
            }
        }
        out = format!("{out}.{sub}");
    }
    for x in c.by_ref() {
        if x == ']' {
            return out;
        }
        if x == '\n' {
            return String::new();
        }
    }
    out
}

/// A value up to the end of its line: quotes, escapes, comments and
/// backslash-newline continuations as git reads them; unquoted runs of
/// white space trimmed at the ends.
fn value(c: &mut Chars) -> String {
    let mut v = String::new();
    let mut quoted = false;
    // Length of `v` up to its last character that is not unquoted space.
    let mut keep = 0;
    skip_blank(c);
    while let Some(x) = c.next() {
        match x {
            '\n' => break,
            '"' => quoted = !quoted,
            '\\' => match c.next() {
                Some('\n') => {}
                Some('n') => v.push('\n'),
                Some('t') => v.push('\t'),
                Some('b') => {
                    v.pop();
                }
                Some(y) => v.push(y),
                None => break,
            },
            '#' | ';' if !quoted => {
                skip_line(c);
                break;
            }
            x => {
                v.push(x);
                if quoted || !x.is_whitespace() {
                    keep = v.len();
                }
                continue;
            }
        }
        keep = v.len();
    }
    v.truncate(keep);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<(String, String)> {
        let mut out = vec![];
        parse(text, Path::new("/r/.git/config"), &mut out);
        out.into_iter().map(|e| (e.key, e.value)).collect()
    }

    #[test]
    fn reads_what_git_reads() {
        let k = keys(
            "[core]\n\trepositoryformatversion = 0\n\thooksPath = .husky/_ # husky\n\
             [Include]\n  path = \"../shared cfg\"\n\
             [includeIf \"gitdir:~/w/\"]\n path = inc\\\n2\n\
             [core] HOOKSPATH=\"a\\\"b\" ; trailing\n\
             [core.x]\nbare\nfsmonitor = evil\n",
        );
        assert_eq!(
            k,
            vec![
                ("core.repositoryformatversion".into(), "0".into()),
                ("core.hookspath".into(), ".husky/_".into()),
                ("include.path".into(), "../shared cfg".into()),
                ("includeif.gitdir:~/w/.path".into(), "inc2".into()),
                ("core.hookspath".into(), "a\"b".into()),
                ("core.x.fsmonitor".into(), "evil".into()),
            ]
        );
    }
}

#[cfg(test)]
mod never_panics {
    #![allow(clippy::cast_possible_truncation)]
    use super::*;

    /// Arbitrary text from git-config's special characters never panics
    /// the parser (it reads configs a previous node may have written).
    #[test]
    fn on_any_mix_of_special_characters() {
        const ALPHA: &[char] = &[
            '[', ']', '"', '\\', '\n', '\r', '\t', ' ', '=', '#', ';', '.', 'a', 'é', '\0', 'b',
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut s = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(ALPHA[(x % ALPHA.len() as u64) as usize]);
            }
            let mut out = vec![];
            parse(&s, Path::new("/c"), &mut out);
        }
    }
}
