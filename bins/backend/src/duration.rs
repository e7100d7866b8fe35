//! Durations on command lines: `900`, `30s`, `15m`, `12h`, `30d`, `500ms`.

use std::time::Duration;

/// Parses a duration: an integer number of seconds (`900`) or an integer with a unit,
/// `ms`, `s`, `m`, `h` or `d` (`15m`, `30d`, `500ms`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad =
        || format!("invalid duration {text:?}: expected e.g. 900, 30s, 15m, 12h, 30d or 500ms");
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs_per = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs_per)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}
