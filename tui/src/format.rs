//! Human-readable times, durations and hashes, shared by the CLI tables and the TUI. All times
//! are UTC: the client has no time-zone database, and UTC keeps output identical across machines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix milliseconds as a `SystemTime`, or `None` for the protocol's "unset" value (0).
pub fn system_time(ms: i64) -> Option<SystemTime> {
    u64::try_from(ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `HH:MM:SS` (UTC) for a Unix-ms time, `--:--:--` when unset.
pub fn clock(ms: i64) -> String {
    match system_time(ms) {
        // RFC 3339 seconds is `YYYY-MM-DDTHH:MM:SSZ`; the clock is bytes 11..19.
        Some(t) => humantime::format_rfc3339_seconds(t).to_string()[11..19].to_owned(),
        None => "--:--:--".to_owned(),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for a Unix-ms time, `-` when unset.
pub fn timestamp(ms: i64) -> String {
    match system_time(ms) {
        Some(t) => humantime::format_rfc3339_seconds(t).to_string()[..19].replacen('T', " ", 1),
        None => "-".to_owned(),
    }
}

/// A compact duration: `850ms`, `4.2s`, `3m 04s`, `2h 05m`, `3d 04h`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    let secs = ms / 1000;
    match secs {
        0 => format!("{ms}ms"),
        1..60 => format!("{}.{}s", secs, (ms % 1000) / 100),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d {:02}h", secs / 86400, (secs % 86400) / 3600),
    }
}

/// How long something that started at `start` ran: until `end`, or until `now` while it is
/// still going. Empty when it never started.
pub fn elapsed(start: i64, end: i64, now: i64) -> String {
    if start <= 0 {
        return String::new();
    }
    let end = if end > 0 { end } else { now };
    duration(end - start)
}

/// How long ago `ms` was, coarsely: `12s ago`, `5m ago`, `3h ago`, `2d ago`; `-` when unset.
pub fn ago(ms: i64, now: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    let secs = ((now - ms) / 1000).max(0);
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// The first 12 hex digits of a content hash: enough to tell versions apart, short enough for
/// a table or a one-line message.
pub fn short_hash(hash: &str) -> String {
    hash.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-03-05T06:07:08.900Z
    const T: i64 = 1_709_618_828_900;

    #[test]
    fn clock_and_timestamp_are_utc() {
        assert_eq!(clock(T), "06:07:08");
        assert_eq!(timestamp(T), "2024-03-05 06:07:08");
        assert_eq!(clock(0), "--:--:--");
        assert_eq!(timestamp(0), "-");
    }

    #[test]
    fn durations_are_compact() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(4_250), "4.2s");
        assert_eq!(duration(184_000), "3m 04s");
        assert_eq!(duration(7_500_000), "2h 05m");
        assert_eq!(elapsed(0, 0, T), "");
        assert_eq!(elapsed(T, 0, T + 1_500), "1.5s");
        assert_eq!(ago(T, T + 125_000), "2m ago");
    }
}
