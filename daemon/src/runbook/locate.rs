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
        let step = [
            Segment::Key("steps".into()),
            Segment::Index(step_index),
            Segment::Key("with".into()),
        ];
        self.span(&step, path)
    }

    /// The span of the value at `required` followed by `optional` from the top of the file:
    /// `None` unless every part of `required` exists, else the deepest part of `optional`
    /// that does.
    pub fn span(&self, required: &[Segment], optional: &[Segment]) -> Option<Range<usize>> {
        let mut current: Option<&toml::Spanned<DeValue<'i>>> = None;
        for (position, segment) in required.iter().chain(optional).enumerate() {
            let next = match (segment, current.map(toml::Spanned::get_ref)) {
                (Segment::Key(key), None) => lookup_key(self.root.get_ref(), key),
                (Segment::Key(key), Some(DeValue::Table(table))) => lookup_key(table, key),
                (Segment::Index(i), Some(DeValue::Array(items))) => items.get(*i),
                _ => None,
            };
            match next {
                Some(value) => current = Some(value),
                None if position < required.len() => return None,
                None => break,
            }
        }
        current.map(toml::Spanned::span)
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
        self.document()?.with_span(step_index, path)
    }

    /// As [`Document::span`].
    pub fn span(&self, required: &[Segment], optional: &[Segment]) -> Option<Range<usize>> {
        self.document()?.span(required, optional)
    }

    fn document(&self) -> Option<&Document<'i>> {
        self.document
            .get_or_init(|| Document::parse(self.source))
            .as_ref()
    }
}

/// A path as authors write it: `command[1]`, `env.TOKEN`.
pub fn display_path(path: &[Segment]) -> String {
    let mut text = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Segment::Index(index) => {
                text.push('[');
                text.push_str(&index.to_string());
                text.push(']');
            }
        }
    }
    text
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
        let span = Document::parse(source)
            .expect("TOML")
            .with_span(0, &parse_path("command[1]"))
            .expect("found");
        assert_eq!(&source[span], "\"{{ x }}\"");
        assert_eq!(display_path(&parse_path("command[1]")), "command[1]");
        assert_eq!(display_path(&parse_path("env.TOKEN")), "env.TOKEN");
    }

    #[test]
    fn finds_values_outside_steps_and_needs_the_required_part() {
        let source = "[targets.api]\nurl = \"https://x\"\nheaders = { A = \"{{ y }}\" }\n";
        let document = Document::parse(source).expect("TOML");
        let target = [Segment::Key("targets".into()), Segment::Key("api".into())];
        let span = document
            .span(&target, &parse_path("headers.A"))
            .expect("found");
        assert_eq!(&source[span], "\"{{ y }}\"");
        let span = document
            .span(&target, &parse_path("headers.B"))
            .expect("the deepest part that exists");
        assert_eq!(&source[span], "{ A = \"{{ y }}\" }");
        let missing = [Segment::Key("targets".into()), Segment::Key("web".into())];
        assert_eq!(document.span(&missing, &parse_path("url")), None);
    }
}
