//! A small tokenizer/parser for the POSIX `sh -c` subset the lint needs.
//!
//! Why not a crate: brush-parser 0.4 pulls ~77 crates (`cached`, `insta`,
//! `bon`, `peg` as normal dependencies) into `policy`, which every binary,
//! the jailer included, depends on, and its `$(...)` word pieces carry no
//! spans; yash-syntax has an async API. The lint only needs simple commands
//! with word spans, so this handles quotes, escapes, `;` `&&` `||` `|` `&`,
//! subshells, `$(...)`, backticks, `${...}`, `$((...))`, `<(...)`,
//! redirections and here-documents, and reports anything else as an error
//! (the caller turns it into an `Unparsed` finding). It never panics: every
//! slice is taken at an ASCII delimiter with `get`, and nesting is bounded.
use std::ops::Range;

mod compound;
mod word;

/// `list` terminator for a `case` item.
const CASE_ITEM: Option<u8> = Some(b';');

/// Nesting bound for `$(`, backticks and subshells, so hostile input
/// cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// The word after quote removal; expansions are kept as written (`$HOME`).
    pub value: String,
    pub span: Range<usize>,
    /// Offset at which `value` appears verbatim in the command, so spans
    /// found inside it (`sh -c '...'`) map back exactly.
    pub verbatim: Option<usize>,
    /// Holds an unquoted/double-quoted expansion whose value is unknown.
    pub dynamic: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedirOp {
    /// `>`, `>|`, `&>`: truncates the target.
    Truncate,
    /// `>>`, `&>>`
    Append,
    /// `<`, `<>`
    Read,
    /// `>&`, `<&`: the target is usually an fd number.
    Dup,
    /// `<<`, `<<-`: the target is the delimiter.
    HereDoc,
    /// `<<<`: the target is a string, not a path.
    HereString,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redir {
    pub op: RedirOp,
    pub target: Word,
    /// A here-document's text (`bash <<EOF` runs it as a script).
    pub body: Option<Word>,
}

/// A here-document whose body starts after the next newline.
struct PendingDoc {
    delim: String,
    strip_tabs: bool,
    /// Index in `cmds` once the command is complete, and of its redirection.
    cmd: Option<usize>,
    redir: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SimpleCmd {
    pub words: Vec<Word>,
    pub redirs: Vec<Redir>,
    /// Commands with the same `pipeline` are joined by `|`, in `stage` order.
    pub pipeline: usize,
    pub stage: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub message: String,
    pub span: Range<usize>,
}

/// Every simple command in `src`, including those inside substitutions.
pub(crate) fn parse(src: &str) -> Result<Vec<SimpleCmd>, ParseError> {
    let mut p = Parser {
        src,
        b: src.as_bytes(),
        pos: 0,
        end: src.len(),
        depth: 0,
        cmds: Vec::new(),
        pipelines: 0,
        heredocs: Vec::new(),
    };
    p.list(None)?;
    Ok(p.cmds)
}

struct Parser<'s> {
    src: &'s str,
    b: &'s [u8],
    pos: usize,
    /// Exclusive end of the current region (a backtick body ends early).
    end: usize,
    depth: usize,
    cmds: Vec<SimpleCmd>,
    pipelines: usize,
    heredocs: Vec<PendingDoc>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        (self.pos < self.end).then(|| self.b[self.pos])
    }
    fn peek_at(&self, n: usize) -> Option<u8> {
        (self.pos + n < self.end).then(|| self.b[self.pos + n])
    }
    fn err<T>(&self, message: &str, start: usize) -> Result<T, ParseError> {
        Err(ParseError {
            message: message.into(),
            span: start.min(self.end)..self.end,
        })
    }
    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err("nesting too deep", self.pos);
        }
        Ok(())
    }

    fn skip_blanks(&mut self) {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(b' ' | b'\t' | b'\r'), _) => self.pos += 1,
                (Some(b'\\'), Some(b'\n')) => self.pos += 2,
                _ => return,
            }
        }
    }

    fn newline(&mut self) {
        self.pos += 1;
        for doc in std::mem::take(&mut self.heredocs) {
            let body_start = self.pos;
            let mut body_end = self.end;
            while self.pos < self.end {
                let line_end = self.b[self.pos..self.end]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(self.end, |i| self.pos + i);
                let line = self.src.get(self.pos..line_end).unwrap_or("");
                let line = if doc.strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    line
                };
                let line_start = self.pos;
                self.pos = (line_end + 1).min(self.end);
                if line == doc.delim {
                    body_end = line_start;
                    break;
                }
            }
            let body = Word {
                value: self.src.get(body_start..body_end).unwrap_or("").to_string(),
                span: body_start..body_end,
                verbatim: Some(body_start),
                dynamic: false,
            };
            let redir = doc
                .cmd
                .and_then(|c| self.cmds.get_mut(c))
                .and_then(|c| c.redirs.get_mut(doc.redir));
            if let Some(r) = redir {
                r.body = Some(body);
            }
        }
    }

    /// A command list, up to the end or (with `term`) a closing `)`, or for
    /// `CASE_ITEM` up to (not past) `;;`, `;&` or `esac`.
    fn list(&mut self, term: Option<u8>) -> Result<(), ParseError> {
        let start = self.pos;
        loop {
            self.skip_blanks();
            if term == CASE_ITEM
                && (self.at_keyword("esac")
                    || (self.peek() == Some(b';') && matches!(self.peek_at(1), Some(b';' | b'&'))))
            {
                return Ok(());
            }
            match self.peek() {
                None if term == CASE_ITEM => return self.err("missing `esac`", start),
                None if term.is_some() => return self.err("missing `)`", start),
                None => return Ok(()),
                Some(b'#') => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.pos += 1;
                    }
                }
                Some(b'\n') => self.newline(),
                Some(b';') => self.pos += 1,
                Some(b')') if term == Some(b')') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b')') => return self.err("unexpected `)`", self.pos),
                Some(c @ (b'&' | b'|')) if !(c == b'&' && self.peek_at(1) == Some(b'>')) => {
                    return self.err("missing command before operator", self.pos)
                }
                Some(_) => {
                    self.pipeline()?;
                    self.skip_blanks();
                    let two = (self.peek(), self.peek_at(1));
                    match two {
                        (Some(b'&'), Some(b'&')) | (Some(b'|'), Some(b'|')) => {
                            self.pos += 2;
                            self.expect_command()?;
                        }
                        (Some(b'&'), _) => self.pos += 1,
                        _ => {}
                    }
                }
            }
        }
    }

    /// After `&&`, `||` or `|` a command must follow (newlines allowed).
    fn expect_command(&mut self) -> Result<(), ParseError> {
        loop {
            self.skip_blanks();
            match self.peek() {
                Some(b'\n') => self.newline(),
                None | Some(b';' | b'&' | b'|' | b')') => {
                    return self.err("missing command after operator", self.pos)
                }
                Some(_) => return Ok(()),
            }
        }
    }

    fn pipeline(&mut self) -> Result<(), ParseError> {
        let id = self.pipelines;
        self.pipelines += 1;
        let mut stage = 0;
        loop {
            self.command(id, stage)?;
            self.skip_blanks();
            match (self.peek(), self.peek_at(1)) {
                (Some(b'|'), Some(b'|')) => return Ok(()),
                (Some(b'|'), Some(b'&')) => self.pos += 2,
                (Some(b'|'), _) => self.pos += 1,
                _ => return Ok(()),
            }
            self.expect_command()?;
            stage += 1;
        }
    }

    fn command(&mut self, pipeline: usize, stage: usize) -> Result<(), ParseError> {
        self.skip_blanks();
        if self.at_keyword("case") {
            self.case_clause()?;
        } else if self.peek() == Some(b'(') {
            let start = self.pos;
            if self.peek_at(1) == Some(b'(') {
                self.balanced(b'(', b')', start)?; // `(( arithmetic ))`
            } else {
                self.pos += 1;
                self.enter()?;
                self.list(Some(b')'))?;
                self.depth -= 1;
            }
        }
        let mut cmd = SimpleCmd {
            words: Vec::new(),
            redirs: Vec::new(),
            pipeline,
            stage,
        };
        loop {
            self.skip_blanks();
            let (c, next) = (self.peek(), self.peek_at(1));
            match c {
                None | Some(b';' | b'|' | b'\n' | b')') => break,
                Some(b'&') if next != Some(b'>') => break,
                Some(b'#') => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.pos += 1;
                    }
                    break;
                }
                Some(b'(') => {
                    let start = self.pos;
                    let array = cmd
                        .words
                        .last()
                        .is_some_and(|w| w.span.end == start && w.value.ends_with('='));
                    self.pos += 1;
                    if array {
                        // `name=(a b c)`: the elements are words of the assignment.
                        loop {
                            self.skip_blank_lines();
                            if self.peek() == Some(b')') {
                                self.pos += 1;
                                break;
                            }
                            if self.word()?.is_none() {
                                return self.err("unterminated array", start);
                            }
                        }
                        continue;
                    }
                    // `name()` opens a function definition; its body follows.
                    self.skip_blanks();
                    let header = match cmd.words.as_slice() {
                        [_] => true,
                        [kw, _] => kw.value == "function",
                        _ => false,
                    };
                    if header && self.peek() == Some(b')') {
                        self.pos += 1;
                        break;
                    }
                    return self.err("unexpected `(`", start);
                }
                Some(b'<' | b'>') if next == Some(b'(') => {
                    let w = self.proc_subst()?;
                    cmd.words.push(w);
                }
                Some(b'<' | b'>' | b'&') => self.redirection(&mut cmd)?,
                Some(_) => {
                    let Some(w) = self.word()? else {
                        return self.err("unexpected character", self.pos);
                    };
                    let io_number = w.verbatim == Some(w.span.start)
                        && w.value.bytes().all(|c| c.is_ascii_digit())
                        && matches!(self.peek(), Some(b'<' | b'>'));
                    if !io_number {
                        cmd.words.push(w);
                    }
                }
            }
        }
        if !cmd.words.is_empty() || !cmd.redirs.is_empty() {
            self.cmds.push(cmd);
            let at = self.cmds.len() - 1;
            // Only this command's documents, at the tail, lack an owner.
            for d in self
                .heredocs
                .iter_mut()
                .rev()
                .take_while(|d| d.cmd.is_none())
            {
                d.cmd = Some(at);
            }
        }
        Ok(())
    }

    fn redirection(&mut self, cmd: &mut SimpleCmd) -> Result<(), ParseError> {
        let start = self.pos;
        let rest = self.b.get(self.pos..self.end).unwrap_or(&[]);
        let (op, len) = match rest {
            [b'&', b'>', b'>', ..] => (RedirOp::Append, 3),
            [b'&', b'>', ..] => (RedirOp::Truncate, 2),
            [b'<', b'<', b'<', ..] => (RedirOp::HereString, 3),
            [b'<', b'<', b'-', ..] => (RedirOp::HereDoc, 3),
            [b'<', b'<', ..] => (RedirOp::HereDoc, 2),
            [b'<', b'>', ..] => (RedirOp::Read, 2),
            [b'<', b'&', ..] | [b'>', b'&', ..] => (RedirOp::Dup, 2),
            [b'>', b'>', ..] => (RedirOp::Append, 2),
            [b'>', b'|', ..] => (RedirOp::Truncate, 2),
            [b'>', ..] => (RedirOp::Truncate, 1),
            _ => (RedirOp::Read, 1),
        };
        self.pos += len;
        self.skip_blanks();
        let Some(target) = self.word()? else {
            return self.err("redirection without a target", start);
        };
        if op == RedirOp::HereDoc {
            self.heredocs.push(PendingDoc {
                delim: target.value.clone(),
                strip_tabs: len == 3,
                cmd: None,
                redir: cmd.redirs.len(),
            });
        }
        cmd.redirs.push(Redir {
            op,
            target,
            body: None,
        });
        Ok(())
    }

    /// `<(list)` or `>(list)`: a word naming a pipe; its commands are parsed.
    fn proc_subst(&mut self) -> Result<Word, ParseError> {
        let start = self.pos;
        self.pos += 2;
        self.enter()?;
        self.list(Some(b')'))?;
        self.depth -= 1;
        let raw = self.src.get(start..self.pos).unwrap_or("").to_string();
        Ok(Word {
            value: raw,
            span: start..self.pos,
            verbatim: Some(start),
            dynamic: true,
        })
    }
}
