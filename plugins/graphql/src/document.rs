//! The GraphQL document of a step: parsed to catch syntax errors (with the line and column
//! inside the query string) and to know which operation is sent, and whether it is a query
//! or a mutation.

use std::sync::LazyLock;

use graphql_parser::query::{Definition, OperationDefinition, parse_query};
use regex::Regex;

/// One operation of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// `query`, `mutation` or `subscription`.
    pub kind: &'static str,
    /// Its name; anonymous operations have none.
    pub name: Option<String>,
}

impl Operation {
    /// `mutation CreateOrder`, `query` for an anonymous one.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("{} {name}", self.kind),
            None => self.kind.to_owned(),
        }
    }
}

/// A syntax error at a 1-based line and column (in characters) of the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// What is wrong, e.g. ``unexpected `[`, expected Name``.
    pub message: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

static POSITION: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"Parse error at (\d+):(\d+)").ok());
static TOKEN: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^`(.*)\[[A-Za-z]+\]`$").ok());

/// The operations of a document, or its first syntax error.
pub fn operations(query: &str) -> Result<Vec<Operation>, SyntaxError> {
    // graphql-parser counts a tab as 8 columns and keeps no structured position in its error,
    // only "at L:C" in the text. A tab becomes one space and CRLF one LF (neither changes
    // what the document means), so that its columns are characters again.
    let normalized = query.replace("\r\n", "\n").replace(['\t', '\u{feff}'], " ");
    let document =
        parse_query::<String>(&normalized).map_err(|err| syntax_error(&err.to_string()))?;
    let mut operations = Vec::new();
    for definition in document.definitions {
        let Definition::Operation(operation) = definition else {
            continue;
        };
        let (kind, name) = match operation {
            OperationDefinition::SelectionSet(_) => ("query", None),
            OperationDefinition::Query(query) => ("query", query.name),
            OperationDefinition::Mutation(mutation) => ("mutation", mutation.name),
            OperationDefinition::Subscription(subscription) => ("subscription", subscription.name),
        };
        operations.push(Operation { kind, name });
    }
    Ok(operations)
}

/// Reads graphql-parser's error text: `query parse error: Parse error at 2:10`, then
/// ``Unexpected `[[Punctuator]` `` and `Expected Name` lines.
fn syntax_error(text: &str) -> SyntaxError {
    let (line, column) = POSITION
        .as_ref()
        .and_then(|regex| regex.captures(text))
        .map(|found| {
            let number = |index| {
                found
                    .get(index)
                    .and_then(|m| m.as_str().parse().ok())
                    .unwrap_or(1)
            };
            (number(1), number(2))
        })
        .unwrap_or((1, 1));
    let mut unexpected = None;
    let mut expected = None;
    for line in text.lines().skip(1) {
        if let Some(what) = line.strip_prefix("Unexpected ") {
            // A tokenizer error is followed by a second, less useful "end of input".
            unexpected.get_or_insert_with(|| describe_unexpected(what));
        } else if let Some(what) = line.strip_prefix("Expected ") {
            expected.get_or_insert_with(|| format!("expected {what}"));
        }
    }
    let message = match (unexpected, expected) {
        (Some(unexpected), Some(expected)) => format!("{unexpected}, {expected}"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => text
            .trim_start_matches("query parse error: ")
            .lines()
            .next()
            .unwrap_or("syntax error")
            .to_owned(),
    };
    SyntaxError {
        message,
        line,
        column,
    }
}

/// ``unexpected `[` `` for a token (shown as ``[[Punctuator]``), the tokenizer's own words
/// (`unterminated string value`) otherwise.
fn describe_unexpected(what: &str) -> String {
    if let Some(token) = TOKEN
        .as_ref()
        .and_then(|regex| regex.captures(what))
        .and_then(|found| found.get(1))
    {
        return format!("unexpected `{}`", token.as_str());
    }
    if what == "end of input" {
        return "unexpected end of input".into();
    }
    what.to_owned()
}

/// The operation a request runs: the one named by `operation_name`, or the only one.
pub fn select<'a>(
    operations: &'a [Operation],
    operation_name: Option<&str>,
) -> Result<&'a Operation, SelectError> {
    match (operations, operation_name) {
        ([], _) => Err(SelectError::Query(
            "the document has no operation (only fragments)".into(),
        )),
        (_, Some(wanted)) => operations
            .iter()
            .find(|operation| operation.name.as_deref() == Some(wanted))
            .ok_or_else(|| {
                SelectError::OperationName(format!(
                    "the document has no operation named `{wanted}`{}",
                    names_hint(operations)
                ))
            }),
        ([one], None) => Ok(one),
        (many, None) => Err(SelectError::Query(format!(
            "the document has {} operations; set `operation_name`{}",
            many.len(),
            names_hint(many)
        ))),
    }
}

/// Which field a selection problem is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectError {
    /// The document itself.
    Query(String),
    /// `operation_name`.
    OperationName(String),
}

fn names_hint(operations: &[Operation]) -> String {
    let names: Vec<&str> = operations
        .iter()
        .filter_map(|operation| operation.name.as_deref())
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (it has {})", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn error(query: &str) -> (u32, u32, String) {
        let err = operations(query).unwrap_err();
        (err.line, err.column, err.message)
    }

    #[test]
    fn operations_are_listed() {
        assert_eq!(
            operations("{ a }").unwrap(),
            [Operation {
                kind: "query",
                name: None
            }]
        );
        let ops =
            operations("query Q { a }\nmutation M($x: Int) { b(x: $x) }\nfragment F on T { c }")
                .unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[1].describe(), "mutation M");
    }

    #[test]
    fn syntax_errors_have_a_position_and_a_clean_message() {
        assert_eq!(
            error("query MyQuery {\n  field1([something])\n}"),
            (2, 10, "unexpected `[`, expected Name".into())
        );
        assert_eq!(
            error("querry MyQuery {\n  field1\n}"),
            (
                1,
                1,
                "unexpected `querry`, expected {, query, mutation, subscription or fragment".into()
            )
        );
        assert_eq!(
            error("{ a"),
            (1, 4, "unexpected end of input, expected }".into())
        );
        assert_eq!(
            error("{ a ? }"),
            (1, 5, "unexpected character '?', expected }".into())
        );
        let (line, column, message) = error("{ a(x: \"open) }");
        assert_eq!((line, column), (1, 8));
        assert!(
            message.starts_with("unterminated string value, expected"),
            "{message}"
        );
    }

    #[test]
    fn columns_count_characters_even_with_tabs_and_crlf() {
        assert_eq!(error("\t\t{ a(: 1) }").1, 7);
        assert_eq!(error("{ a(x: \"é\") b(: 1) }").1, 15);
        assert_eq!(
            error("query {\r\n\ta(: 1)\r\n}"),
            (2, 4, "unexpected `:`, expected Name".into())
        );
    }

    #[test]
    fn the_operation_is_chosen_by_name_or_alone() {
        let ops = operations("query A { a } query B { b }").unwrap();
        assert_eq!(select(&ops, Some("B")).unwrap().name.as_deref(), Some("B"));
        assert_eq!(
            select(&ops, None),
            Err(SelectError::Query(
                "the document has 2 operations; set `operation_name` (it has A, B)".into()
            ))
        );
        assert_eq!(
            select(&ops, Some("C")),
            Err(SelectError::OperationName(
                "the document has no operation named `C` (it has A, B)".into()
            ))
        );
        let none = operations("fragment F on T { a }").unwrap();
        assert!(matches!(select(&none, None), Err(SelectError::Query(_))));
    }
}
