//! The Prometheus text format (0.0.4) for scrapers that do not ask for OpenMetrics, such as
//! `promtool check metrics` and older Prometheus servers. `prometheus-client` writes only
//! OpenMetrics; the two differ, for what this registry holds, in two things: a counter's
//! family is named with its `_total` suffix in `# HELP` and `# TYPE`, and there are no
//! `# UNIT` or `# EOF` lines. Samples are the same lines in both.

/// The OpenMetrics text `openmetrics` in the Prometheus text format.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|marker| {
            let rest = line.strip_prefix(marker)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{marker}{name}_total {tail}"))
        });
        match renamed {
            Some(renamed) => text.push_str(renamed.trim_end()),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_their_suffix_and_openmetrics_only_lines_go() {
        let openmetrics = "# HELP runbook_steps Steps.\n\
                           # TYPE runbook_steps counter\n\
                           runbook_steps_total{kind=\"shell\"} 2\n\
                           # HELP runbook_store_size_bytes Size.\n\
                           # TYPE runbook_store_size_bytes gauge\n\
                           # UNIT runbook_store_size_bytes bytes\n\
                           runbook_store_size_bytes 10\n\
                           # EOF\n";
        assert_eq!(
            prometheus_text(openmetrics),
            "# HELP runbook_steps_total Steps.\n\
             # TYPE runbook_steps_total counter\n\
             runbook_steps_total{kind=\"shell\"} 2\n\
             # HELP runbook_store_size_bytes Size.\n\
             # TYPE runbook_store_size_bytes gauge\n\
             runbook_store_size_bytes 10\n"
        );
    }
}
