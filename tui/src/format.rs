//! Human-readable times, durations, hashes and plugin grants, shared by the CLI tables and the
//! TUI, and the escaping that keeps text from runs from driving the terminal. All times are UTC: the client
//! has no time-zone database, and UTC keeps output identical across machines.

use std::borrow::Cow;
use std::fmt::Write as _;
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

/// A heartbeat's age to a tenth of a second, as `runbook agents` shows it: `0.4s ago`,
/// `41.0s ago`. Fine-grained on purpose: a live agent heartbeats every few seconds.
pub fn heartbeat(age_ms: u64) -> String {
    // Rounded as the CLI's table rounds it; an f64 holds any real age exactly enough.
    format!("{:.1}s ago", age_ms as f64 / 1000.0)
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

/// `text` with every control character made visible, for printing on one line: output, plans,
/// params and errors come from runs, and a raw ESC or CR in them could rewrite what the user
/// sees (erase a line of a plan, move the cursor, retitle the window). ESC is `\e`, CR `\r`,
/// LF `\n`, other C0 characters and DEL `\xNN`, C1 characters `\u{NN}`. Tab stays: it only
/// moves forward, and output uses it for columns. Backslashes stay as they are, so the form is
/// for reading; `--json` has the exact text.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// [`printable`] for text whose lines are the point (a multi-line error): `\n` stays a line
/// break, every other control character is escaped the same way.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let kept = |c: char| !c.is_control() || c == '\t' || (keep_newlines && c == '\n');
    if text.chars().all(kept) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if kept(c) => escaped.push(c),
            '\u{1b}' => escaped.push_str("\\e"),
            '\r' => escaped.push_str("\\r"),
            '\n' => escaped.push_str("\\n"),
            // Writing to a String cannot fail.
            c if u32::from(c) < 0x80 => {
                let _ = write!(escaped, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(escaped, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(escaped)
}

/// A size for people: bytes up to 1 KiB, then KiB, MiB or GiB with one decimal.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// What an entry acted on, in one cell: `runbook run/step`, or `secret NAME`.
pub fn audit_target(entry: &runbook_protocol::v1::AuditLogEntry) -> String {
    let mut parts = Vec::new();
    if !entry.runbook.is_empty() {
        parts.push(entry.runbook.clone());
    }
    match (entry.run_id.is_empty(), entry.step.is_empty()) {
        (false, false) => parts.push(format!("{}/{}", entry.run_id, entry.step)),
        (false, true) => parts.push(entry.run_id.clone()),
        (true, false) => parts.push(format!("step {}", entry.step)),
        (true, true) => {}
    }
    if !entry.secret.is_empty() {
        parts.push(format!("secret {}", entry.secret));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

/// The `runbook:plugin` host interfaces a plugin's component imports, by short name
/// (`process`, `sql`), without the shared `types`.
pub fn plugin_interfaces(plugin: &runbook_protocol::v1::Plugin) -> Vec<&str> {
    plugin
        .imports
        .iter()
        .filter_map(|import| import.strip_prefix("runbook:plugin/"))
        .map(|rest| rest.split_once('@').map_or(rest, |(name, _)| name))
        .filter(|name| *name != "types")
        .collect()
}

/// Everything a plugin is granted, from the daemon config and `plugin grant` alike: `host
/// api.example.com, process`; `defaults` for a built-in one, `-` for none.
pub fn plugin_grants(plugin: &runbook_protocol::v1::Plugin) -> String {
    if plugin.builtin {
        return "defaults".to_owned();
    }
    let mut parts = Vec::new();
    for grant in [&plugin.configured, &plugin.granted].into_iter().flatten() {
        parts.extend(grant.hosts.iter().map(|host| format!("host {host}")));
        parts.extend(grant.connections.iter().map(|c| format!("connection {c}")));
        if grant.process {
            parts.push("process".to_owned());
        }
        if grant.jwt {
            parts.push("jwt".to_owned());
        }
        if !grant.approval.is_empty() {
            parts.push(format!("approval {}", grant.approval));
        }
    }
    parts.sort();
    parts.dedup();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
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
        assert_eq!(heartbeat(400), "0.4s ago");
        assert_eq!(heartbeat(41_000), "41.0s ago");
    }

    #[test]
    fn control_characters_are_escaped_readably() {
        assert_eq!(
            printable("a\u{1b}[2K\rb\u{7}c\u{0}\u{7f}\u{9b}31m\td"),
            "a\\e[2K\\rb\\x07c\\x00\\x7f\\u{9b}31m\td"
        );
        assert_eq!(printable("one\ntwo"), "one\\ntwo");
        assert_eq!(printable_lines("one\r\ntwo\u{1b}"), "one\\r\ntwo\\e");
        // Text without control characters (the common case) is not copied, and other Unicode
        // and backslashes pass untouched.
        assert!(matches!(
            printable("héllo \\e ✓"),
            Cow::Borrowed("héllo \\e ✓")
        ));
    }
}
