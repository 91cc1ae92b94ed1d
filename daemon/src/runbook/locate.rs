//! Finds the source span of a value nested inside a step's `with` table, so that errors about
//! a field point at that field rather than at the whole table.

use std::cell::OnceCell;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One segment of a path inside a TOML value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Parses a dotted path such as `env.TOKEN` or `command[1]`.
pub fn parse_path(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in path.split('.').filter(|part| !part.is_empty()) {
        let (key, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            segments.push(Segment::Key(key.to_owned()));
        }
        for index in indexes.split('[') {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                segments.push(Segment::Index(i));
            }
        }
    }
    segments
}

/// The span of `steps[step_index].with.<path>` in `source`, or of the deepest part of that
/// path that exists.
pub fn with_span(source: &str, step_index: usize, path: &[Segment]) -> Option<Range<usize>> {
    Document::parse(source)?.with_span(step_index, path)
}

/// A runbook's source parsed once for locating many values in it: parsing is linear in the
/// file, so a checker that reports on many steps must not parse again for each.
pub struct Document<'i> {
    root: toml::Spanned<DeTable<'i>>,
}

impl<'i> Document<'i> {
    /// `None` when `source` is not TOML (the parser has reported that already).
    pub fn parse(source: &'i str) -> Option<Self> {
        DeTable::parse(source).ok().map(|root| Self { root })
    }

    /// The span of `steps[step_index].with.<path>`, or of the deepest part of that path that
    /// exists.
    pub fn with_span(&self, step_index: usize, path: &[Segment]) -> Option<Range<usize>> {
        let steps = lookup_key(self.root.get_ref(), "steps")?;
        let DeValue::Array(steps) = steps.get_ref() else {
            return None;
        };
        let step = steps.get(step_index)?;
        let DeValue::Table(step) = step.get_ref() else {
            return None;
        };
        let mut current = lookup_key(step, "with")?;
        for segment in path {
            let next = match (segment, current.get_ref()) {
                (Segment::Key(key), DeValue::Table(table)) => lookup_key(table, key),
                (Segment::Index(i), DeValue::Array(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(value) => current = value,
                None => break,
            }
        }
        Some(current.span())
    }
}

/// A [`Document`] parsed on first use: spans are only needed to report a problem, and most
/// runbooks have none.
pub struct Locator<'i> {
    source: &'i str,
    document: OnceCell<Option<Document<'i>>>,
}

impl<'i> Locator<'i> {
    /// A locator for `source`; nothing is parsed yet.
    pub fn new(source: &'i str) -> Self {
        Self {
            source,
            document: OnceCell::new(),
        }
    }

    /// As [`Document::with_span`].
    pub fn with_span(&self, step_index: usize, path: &[Segment]) -> Option<Range<usize>> {
        self.document
            .get_or_init(|| Document::parse(self.source))
            .as_ref()?
            .with_span(step_index, path)
    }
}

fn lookup_key<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<&'a toml::Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(name, _)| name.get_ref().as_ref() == key)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_field() {
        let source =
            "[[steps]]\nid = \"a\"\nuses = \"shell\"\nwith = { command = [\"ls\", \"{{ x }}\"] }\n";
        let span = with_span(source, 0, &parse_path("command[1]")).expect("found");
        assert_eq!(&source[span], "\"{{ x }}\"");
    }
}
