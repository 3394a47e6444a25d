//! Word-level lexing: quotes, escapes and `$`/backtick expansions.
use super::{ParseError, Parser, Word};

impl Parser<'_> {
    /// Skip a `open ... close` region with nesting, e.g. `$((1+(2)))`.
    pub(super) fn balanced(&mut self, open: u8, close: u8, start: usize) -> Result<(), ParseError> {
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == b'\\' {
                self.pos = (self.pos + 1).min(self.end);
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(());
                }
            }
        }
        self.err("unterminated expansion", start)
    }

    pub(super) fn push_char_at(&mut self, out: &mut Vec<u8>) {
        // Copy one whole UTF-8 character so `out` stays valid UTF-8.
        let len = self
            .src
            .get(self.pos..)
            .and_then(|s| s.chars().next())
            .map_or(1, char::len_utf8);
        let end = (self.pos + len).min(self.end);
        out.extend_from_slice(self.b.get(self.pos..end).unwrap_or(&[]));
        self.pos = end.max(self.pos + 1);
    }

    pub(super) fn word(&mut self) -> Result<Option<Word>, ParseError> {
        let start = self.pos;
        let mut out = Vec::new();
        let mut dynamic = false;
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' => {
                    break
                }
                b'\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'\n') => self.pos += 1,
                        Some(_) => self.push_char_at(&mut out),
                        None => out.push(b'\\'),
                    }
                }
                b'\'' => {
                    let q = self.pos;
                    self.pos += 1;
                    while self.peek().is_some_and(|c| c != b'\'') {
                        self.push_char_at(&mut out);
                    }
                    if self.peek().is_none() {
                        return self.err("unterminated single quote", q);
                    }
                    self.pos += 1;
                }
                b'"' => {
                    let q = self.pos;
                    self.pos += 1;
                    loop {
                        match (self.peek(), self.peek_at(1)) {
                            (None, _) => return self.err("unterminated double quote", q),
                            (Some(b'"'), _) => break,
                            (Some(b'\\'), Some(b'\n')) => self.pos += 2,
                            (Some(b'\\'), Some(e @ (b'$' | b'`' | b'"' | b'\\'))) => {
                                out.push(e);
                                self.pos += 2;
                            }
                            (Some(b'$'), _) => dynamic |= self.dollar(&mut out)?,
                            (Some(b'`'), _) => dynamic |= self.backtick(&mut out)?,
                            (Some(_), _) => self.push_char_at(&mut out),
                        }
                    }
                    self.pos += 1;
                }
                b'$' => dynamic |= self.dollar(&mut out)?,
                b'`' => dynamic |= self.backtick(&mut out)?,
                _ => self.push_char_at(&mut out),
            }
        }
        if self.pos == start {
            return Ok(None);
        }
        let value = String::from_utf8_lossy(&out).into_owned();
        let skip = usize::from(matches!(self.b.get(start), Some(b'\'' | b'"')));
        let at = start + skip;
        let verbatim = (self.src.get(at..at + value.len()) == Some(value.as_str())).then_some(at);
        Ok(Some(Word {
            value,
            span: start..self.pos,
            verbatim,
            dynamic,
        }))
    }

    /// A `$` expansion; appends it as written. Returns whether it is dynamic.
    fn dynamic_raw(&mut self, start: usize, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(self.b.get(start..self.pos).unwrap_or(&[]));
        true
    }

    fn dollar(&mut self, out: &mut Vec<u8>) -> Result<bool, ParseError> {
        let start = self.pos;
        match self.peek_at(1) {
            Some(b'(') if self.peek_at(2) == Some(b'(') => {
                self.pos += 1;
                self.balanced(b'(', b')', start)?;
            }
            Some(b'(') => {
                self.pos += 2;
                self.enter()?;
                self.list(Some(b')'))?;
                self.depth -= 1;
            }
            Some(b'{') => {
                self.pos += 1;
                self.balanced(b'{', b'}', start)?;
            }
            Some(b'\'') => {
                // ANSI-C quoting: a literal with backslash escapes.
                self.pos += 2;
                loop {
                    match (self.peek(), self.peek_at(1)) {
                        (None, _) => return self.err("unterminated $' quote", start),
                        (Some(b'\''), _) => break,
                        (Some(b'\\'), Some(e)) => {
                            out.push(match e {
                                b'n' => b'\n',
                                b't' => b'\t',
                                other => other,
                            });
                            self.pos += 2;
                        }
                        _ => self.push_char_at(out),
                    }
                }
                self.pos += 1;
                return Ok(false);
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                self.pos += 1;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    self.pos += 1;
                }
            }
            Some(b'0'..=b'9' | b'@' | b'*' | b'#' | b'?' | b'$' | b'!' | b'-') => self.pos += 2,
            _ => {
                out.push(b'$');
                self.pos += 1;
                return Ok(false);
            }
        }
        Ok(self.dynamic_raw(start, out))
    }

    fn backtick(&mut self, out: &mut Vec<u8>) -> Result<bool, ParseError> {
        let start = self.pos;
        let mut i = start + 1;
        while i < self.end && self.b[i] != b'`' {
            i += if self.b[i] == b'\\' { 2 } else { 1 };
        }
        if i >= self.end {
            return self.err("unterminated backquote", start);
        }
        let (saved_end, saved_docs) = (self.end, std::mem::take(&mut self.heredocs));
        self.end = i;
        self.pos = start + 1;
        self.enter()?;
        let inner = self.list(None);
        self.depth -= 1;
        self.end = saved_end;
        self.heredocs = saved_docs;
        inner?;
        self.pos = i + 1;
        Ok(self.dynamic_raw(start, out))
    }
}
