//! Reserved words and the `case` compound command.
use super::{ParseError, Parser, CASE_ITEM};

impl Parser<'_> {
    /// Whether the input continues with the reserved word `kw`.
    pub(super) fn at_keyword(&self, kw: &str) -> bool {
        let rest = self.b.get(self.pos..self.end).unwrap_or(&[]);
        rest.starts_with(kw.as_bytes())
            && rest.get(kw.len()).is_none_or(|c| {
                matches!(
                    c,
                    b' ' | b'\t' | b'\r' | b'\n' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>'
                )
            })
    }

    pub(super) fn skip_blank_lines(&mut self) {
        loop {
            self.skip_blanks();
            match self.peek() {
                Some(b'\n') => self.newline(),
                Some(b'#') => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    /// `case WORD in [(]PAT[|PAT]...) LIST ;; ... esac`
    pub(super) fn case_clause(&mut self) -> Result<(), ParseError> {
        let start = self.pos;
        self.pos += "case".len();
        self.skip_blanks();
        if self.word()?.is_none() {
            return self.err("`case` without a word", start);
        }
        self.skip_blank_lines();
        if !self.at_keyword("in") {
            return self.err("`case` without `in`", start);
        }
        self.pos += "in".len();
        self.enter()?;
        loop {
            self.skip_blank_lines();
            if self.at_keyword("esac") {
                self.pos += "esac".len();
                self.depth -= 1;
                return Ok(());
            }
            if self.peek() == Some(b'(') {
                self.pos += 1;
            }
            loop {
                self.skip_blanks();
                if self.word()?.is_none() {
                    return self.err("bad `case` pattern", start);
                }
                self.skip_blanks();
                match self.peek() {
                    Some(b'|') => self.pos += 1,
                    Some(b')') => break,
                    _ => return self.err("bad `case` pattern", start),
                }
            }
            self.pos += 1;
            self.list(CASE_ITEM)?;
            let rest = self.b.get(self.pos..self.end).unwrap_or(&[]);
            self.pos += if rest.starts_with(b";;&") {
                3
            } else if rest.starts_with(b";") {
                2
            } else {
                0
            };
        }
    }
}
