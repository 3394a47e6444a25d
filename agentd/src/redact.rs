//! Replaces injected secret values in a byte stream with `[REDACTED]`.
//!
//! Pure and streaming: `feed` holds back the longest tail (at most
//! `max_secret_len - 1` bytes) that is the start of some secret and could be
//! completed by the next chunk, so an occurrence split across read
//! boundaries is still caught, and nothing else: a terminal's prompt or
//! echo must show before the node's next output, not only at EOF. `finish` flushes
//! the held tail at EOF. Matching is leftmost, and at one position the longest
//! secret wins, so a secret that is a prefix of another leaves no residue.

pub const REPLACEMENT: &[u8] = b"[REDACTED]";

pub struct Redactor {
    /// Non-empty, distinct, longest first.
    secrets: Vec<Vec<u8>>,
    /// `first[b]`: some secret starts with byte `b` (skips most positions fast).
    first: [bool; 256],
    /// Bytes that might begin a secret completed by later input.
    keep: usize,
    pending: Vec<u8>,
}

impl Redactor {
    /// `None` when there is nothing to redact (no non-empty secret).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a [u8]>) -> Option<Redactor> {
        let mut v: Vec<Vec<u8>> = secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        v.dedup();
        let mut first = [false; 256];
        for s in &v {
            first[usize::from(s[0])] = true;
        }
        let keep = v[0].len() - 1;
        Some(Redactor {
            secrets: v,
            first,
            keep,
            pending: Vec::new(),
        })
    }

    /// Appends to `out` the redacted form of everything that can no longer
    /// be part of a secret; the rest stays pending.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.pending.extend_from_slice(input);
        let safe = self.pending.len() - self.unfinished_tail();
        let done = self.scan(safe, out);
        self.pending.drain(..done);
    }

    /// End of stream: flushes the held tail.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let done = self.scan(self.pending.len(), out);
        debug_assert_eq!(done, self.pending.len());
        self.pending.clear();
    }

    /// The length of the longest tail of `pending` (at most `keep`) that a
    /// secret starts with. Any secret beginning earlier is either complete
    /// in `pending` or impossible, so everything before this tail is safe.
    /// Worst case O(keep²) byte compares per chunk, with a secret of
    /// repeated bytes; secrets are at most 64 KiB and usually short.
    fn unfinished_tail(&self) -> usize {
        let data = &self.pending;
        let from = data.len().saturating_sub(self.keep);
        (from..data.len())
            .find(|&i| {
                self.first[usize::from(data[i])]
                    && self.secrets.iter().any(|s| s.starts_with(&data[i..]))
            })
            .map_or(0, |i| data.len() - i)
    }

    /// Bytes held back, not yet written to any `out`.
    #[cfg(test)]
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Emits matches starting before `limit` (a match may run past it) and
    /// plain bytes before `limit`; returns how many pending bytes were used.
    fn scan(&self, limit: usize, out: &mut Vec<u8>) -> usize {
        let data = &self.pending;
        let mut plain = 0; // start of the plain run not yet emitted
        let mut i = 0;
        while i < limit {
            if self.first[usize::from(data[i])] {
                if let Some(s) = self.secrets.iter().find(|s| data[i..].starts_with(s)) {
                    out.extend_from_slice(&data[plain..i]);
                    out.extend_from_slice(REPLACEMENT);
                    i += s.len();
                    plain = i;
                    continue;
                }
            }
            i += 1;
        }
        let end = i.max(limit);
        out.extend_from_slice(&data[plain..end.min(data.len())]);
        end.min(data.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn redact_chunks(secrets: &[&str], chunks: &[&str]) -> String {
        let mut r = Redactor::new(secrets.iter().map(|s| s.as_bytes())).unwrap();
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c.as_bytes(), &mut out);
        }
        r.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn no_secrets_means_no_redactor() {
        assert!(Redactor::new([b"".as_slice()]).is_none());
        assert!(Redactor::new(std::iter::empty()).is_none());
    }

    #[test]
    fn replaces_every_occurrence_in_one_chunk() {
        assert_eq!(
            redact_chunks(&["hunter2"], &["a hunter2 b hunter2hunter2"]),
            "a [REDACTED] b [REDACTED][REDACTED]"
        );
    }

    #[test]
    fn catches_a_secret_split_across_chunks_at_every_boundary() {
        let text = "xx hunter2 yy";
        for cut in 0..=text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(
                redact_chunks(&["hunter2"], &[a, b]),
                "xx [REDACTED] yy",
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn catches_a_secret_fed_one_byte_at_a_time() {
        let text = "pre s3cr3t mid s3cr3 post s3cr3t";
        let chunks: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        assert_eq!(
            redact_chunks(&["s3cr3t"], &refs),
            "pre [REDACTED] mid s3cr3 post [REDACTED]"
        );
    }

    #[test]
    fn longest_secret_wins_at_one_position() {
        assert_eq!(
            redact_chunks(&["abc", "abcdef"], &["xabcdefx abcx"]),
            "x[REDACTED]x [REDACTED]x"
        );
        assert_eq!(
            redact_chunks(&["abc", "abcdef"], &["xabc", "defx"]),
            "x[REDACTED]x"
        );
    }

    #[test]
    fn holds_back_only_a_tail_that_starts_a_secret() {
        let mut r = Redactor::new([b"secret".as_slice()]).unwrap();
        let mut out = Vec::new();
        // Nothing here can start "secret": a prompt shows at once.
        r.feed(b"hello world", &mut out);
        assert_eq!(out, b"hello world");
        assert_eq!(r.pending_len(), 0);
        r.feed(b" $ sec", &mut out);
        assert_eq!(out, b"hello world $ ");
        assert_eq!(r.pending_len(), 3);
        r.feed(b"ond", &mut out);
        assert_eq!(out, b"hello world $ second");
        r.feed(b" secre", &mut out);
        r.feed(b"t!", &mut out);
        r.finish(&mut out);
        assert_eq!(out, b"hello world $ second [REDACTED]!");
    }

    #[test]
    fn a_partial_secret_at_eof_is_flushed_unchanged() {
        assert_eq!(
            redact_chunks(&["hunter2"], &["end hunt", "er"]),
            "end hunter"
        );
    }

    #[test]
    fn binary_and_overlapping_text_is_handled() {
        assert_eq!(redact_chunks(&["aa"], &["aaa"]), "[REDACTED]a");
        let mut r = Redactor::new([b"\xff\x00".as_slice()]).unwrap();
        let mut out = Vec::new();
        r.feed(b"\x01\xff", &mut out);
        r.feed(b"\x00\x02", &mut out);
        r.finish(&mut out);
        assert_eq!(out, b"\x01[REDACTED]\x02");
    }
}
