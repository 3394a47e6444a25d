//! Aligned text columns for human output. The last column is never padded
//! (no trailing spaces) and may wrap to a total width, continuing under itself.

/// The narrowest a wrapped last column gets.
pub const MIN_LAST: usize = 24;

pub struct Table {
    indent: usize,
    gap: usize,
    wrap_total: Option<usize>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(indent: usize) -> Self {
        Table {
            indent,
            gap: 2,
            wrap_total: None,
            rows: vec![],
        }
    }

    /// Wrap the last column so lines fit `width` columns where they can
    /// (the last column keeps at least `MIN_LAST` characters).
    pub fn wrap_total(mut self, width: usize) -> Self {
        self.wrap_total = Some(width);
        self
    }

    pub fn row<I, S>(&mut self, cols: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cols.into_iter().map(Into::into).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let ncols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut width = vec![0; ncols];
        for r in &self.rows {
            // The last cell of a row does not widen its column: it is not padded.
            for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut s = String::new();
        for r in &self.rows {
            let mut line = " ".repeat(self.indent);
            let last = r.len().saturating_sub(1);
            for (i, c) in r.iter().enumerate() {
                if i == last {
                    let col = line.chars().count();
                    let parts = match self.wrap_total {
                        Some(w) => wrap(c, w.saturating_sub(col).max(MIN_LAST)),
                        None => vec![c.clone()],
                    };
                    for (j, p) in parts.iter().enumerate() {
                        if j > 0 {
                            s.push_str(line.trim_end());
                            s.push('\n');
                            line = " ".repeat(col);
                        }
                        line.push_str(p);
                    }
                } else {
                    line.push_str(c);
                    let pad = width[i] - c.chars().count() + self.gap;
                    line.push_str(&" ".repeat(pad));
                }
            }
            s.push_str(line.trim_end());
            s.push('\n');
        }
        s
    }
}

/// Greedy word wrap; a word longer than `width` stays whole.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![];
    let mut cur = String::new();
    for w in text.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + w.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn aligns_columns_without_trailing_spaces() {
        let mut t = Table::new(2);
        t.row(["a", "bb", "c"]);
        t.row(["aaa", "b", ""]);
        assert_eq!(t.render(), "  a    bb  c\n  aaa  b\n");
    }

    #[test]
    fn wraps_the_last_column_under_itself() {
        let mut t = Table::new(0).wrap_total(27);
        t.row(["x", "one two three four five six seven"]);
        assert_eq!(t.render(), "x  one two three four five\n   six seven\n");
    }

    #[test]
    fn wrap_keeps_long_words_whole() {
        assert_eq!(wrap("abcdefghij k", 5), vec!["abcdefghij", "k"]);
        assert_eq!(wrap("", 5), vec![""]);
    }
}

/// A byte count for people: `0 B`, `512 B`, `1.2 KiB`, `3.4 MiB`, `1.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        // Rounded as printed, so 1023.96 KiB reads 1.0 MiB, not 1024.0 KiB.
        if (v * 10.0).round() < 10240.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod human_tests {
    use super::human_bytes;

    #[test]
    fn byte_counts_read_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1_258_291), "1.2 MiB");
        assert_eq!(human_bytes((1 << 20) - 1), "1.0 MiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
    }
}
