//! Human units in policy files: durations (`30m`, `90s`, `500ms`) and byte
//! sizes (`16MiB`, `1GB`). Strings only, so a bare `30` is never guessed at.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A duration in milliseconds, written with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Dur(pub u64);

/// A byte count, written with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Bytes(pub u64);

impl Dur {
    pub fn millis(self) -> u64 {
        self.0
    }
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
    /// Whole seconds, rounded up (RLIMIT_CPU is in seconds and must not be 0).
    pub fn secs_ceil(self) -> u64 {
        self.0.div_ceil(1000).max(1)
    }
}

fn split_number(s: &str) -> Result<(u64, &str), String> {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return Err(format!("{s:?}: expected a number followed by a unit"));
    }
    let n: u64 = s[..end]
        .parse()
        .map_err(|_| format!("{s:?}: number out of range"))?;
    Ok((n, s[end..].trim()))
}

impl FromStr for Dur {
    type Err = String;
    /// One or more terms, each a number (decimals allowed) and a unit:
    /// `90s`, `1.5s`, `250ms`, `2m`, `1h30m`, `1h 30m`.
    fn from_str(s: &str) -> Result<Self, String> {
        const UNITS: &str = "ms, s, m, h, d; e.g. 1.5s, 250ms, 1h30m";
        let t = s.trim();
        if t.is_empty() {
            return Err(format!("{s:?}: expected a number followed by a unit"));
        }
        let mut rest = t;
        let mut ms: u64 = 0;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(rest.len());
            let num = &rest[..num_end];
            if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
                return Err(format!(
                    "{s:?}: expected a number followed by a unit ({UNITS})"
                ));
            }
            let after = rest[num_end..].trim_start();
            let unit_end = after
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(after.len());
            let (unit, tail) = after.split_at(unit_end);
            let mul: u64 = match unit.trim() {
                "ms" => 1,
                "s" => 1000,
                "m" | "min" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "" => return Err(format!("{s:?}: missing unit ({UNITS})")),
                u => return Err(format!("{s:?}: unknown unit {u:?} ({UNITS})")),
            };
            let (int, frac) = num.split_once('.').unwrap_or((num, ""));
            if frac.contains('.') || frac.len() > 9 {
                return Err(format!("{s:?}: bad number {num:?}"));
            }
            let range = || format!("{s:?}: out of range");
            let int: u64 = int.parse().map_err(|_| range())?;
            let mut term = int.checked_mul(mul).ok_or_else(range)?;
            if !frac.is_empty() {
                let scale = 10u64.pow(u32::try_from(frac.len()).unwrap_or(9));
                let f: u64 = frac.parse().map_err(|_| range())?;
                let part = u128::from(f) * u128::from(mul);
                if part % u128::from(scale) != 0 {
                    return Err(format!(
                        "{s:?}: finer than a millisecond (the smallest step is 1ms)"
                    ));
                }
                let part = u64::try_from(part / u128::from(scale)).map_err(|_| range())?;
                term = term.checked_add(part).ok_or_else(range)?;
            }
            ms = ms.checked_add(term).ok_or_else(range)?;
            rest = tail.trim_start();
        }
        if ms == 0 {
            return Err(format!("{s:?}: must be greater than zero"));
        }
        Ok(Dur(ms))
    }
}

impl FromStr for Bytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, unit) = split_number(s)?;
        let mul: u64 = match unit {
            "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            "" => {
                return Err(format!(
                    "{s:?}: missing unit (B, KiB, MiB, GiB, KB, MB, GB)"
                ))
            }
            u => {
                return Err(format!(
                    "{s:?}: unknown unit {u:?} (B, KiB, MiB, GiB, KB, MB, GB)"
                ))
            }
        };
        let b = n
            .checked_mul(mul)
            .ok_or_else(|| format!("{s:?}: out of range"))?;
        if b == 0 {
            return Err(format!("{s:?}: must be greater than zero"));
        }
        Ok(Bytes(b))
    }
}

impl TryFrom<String> for Dur {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}
impl TryFrom<String> for Bytes {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        for (unit, n) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms.is_multiple_of(n) {
                return write!(f, "{}{unit}", ms / n);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, n) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if b.is_multiple_of(n) {
                return write!(f, "{}{unit}", b / n);
            }
        }
        write!(f, "{b}B")
    }
}

impl From<Dur> for String {
    fn from(d: Dur) -> String {
        d.to_string()
    }
}
impl From<Bytes> for String {
    fn from(b: Bytes) -> String {
        b.to_string()
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^\\s*([0-9]+(\\.[0-9]+)?\\s*(ms|s|min|m|h|d)\\s*)+$",
            "description": "A duration with units: 500ms, 90s, 1.5s, 30m, 1h30m, 1d"
        })
    }
}
#[cfg(feature = "schema")]
impl schemars::JsonSchema for Bytes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^\\s*[0-9]+\\s*(B|KiB|MiB|GiB|TiB|KB|kB|MB|GB|TB)\\s*$",
            "description": "A size with a unit: 512KiB, 16MiB, 4GiB, 1GB"
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_durations_with_units() {
        assert_eq!("30m".parse::<Dur>().unwrap(), Dur(1_800_000));
        assert_eq!("500ms".parse::<Dur>().unwrap(), Dur(500));
        assert_eq!("2h".parse::<Dur>().unwrap().to_string(), "2h");
    }

    #[test]
    fn refuses_durations_without_or_with_unknown_unit() {
        assert!("30".parse::<Dur>().unwrap_err().contains("missing unit"));
        assert!("30 weeks"
            .parse::<Dur>()
            .unwrap_err()
            .contains("unknown unit"));
        assert!("0s".parse::<Dur>().is_err());
        assert!("m".parse::<Dur>().is_err());
        assert!("1.5".parse::<Dur>().unwrap_err().contains("missing unit"));
        assert!("1.s".parse::<Dur>().is_err());
        assert!(".5s".parse::<Dur>().is_err());
        assert!("1..5s".parse::<Dur>().is_err());
        assert!("1.5.2s".parse::<Dur>().is_err());
        assert!("0.5ms".parse::<Dur>().unwrap_err().contains("millisecond"));
        assert!("1h30".parse::<Dur>().unwrap_err().contains("missing unit"));
        assert!("-1s".parse::<Dur>().is_err());
        assert!("99999999999999999999d".parse::<Dur>().is_err());
    }

    #[test]
    fn parses_decimal_and_compound_durations() {
        let ms = |s: &str| s.parse::<Dur>().unwrap().millis();
        assert_eq!(ms("1.5s"), 1500);
        assert_eq!(ms("250ms"), 250);
        assert_eq!(ms("2m"), 120_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("1h 30m"), 5_400_000);
        assert_eq!(ms("0.25h"), 900_000);
        assert_eq!(ms("1m0.5s"), 60_500);
        assert_eq!(ms(" 1.5 s "), 1500);
        // Displayed in one unit, and read back the same.
        assert_eq!(
            Dur(5_400_000).to_string().parse::<Dur>().unwrap().millis(),
            5_400_000
        );
    }

    #[test]
    fn parses_binary_and_decimal_sizes() {
        assert_eq!("16MiB".parse::<Bytes>().unwrap(), Bytes(16 << 20));
        assert_eq!("1GB".parse::<Bytes>().unwrap(), Bytes(1_000_000_000));
        assert!("16mb".parse::<Bytes>().is_err());
        assert!("99999999999999TiB".parse::<Bytes>().is_err());
    }
}
