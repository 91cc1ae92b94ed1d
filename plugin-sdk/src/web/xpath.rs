//! XPath 1.0 over XML response bodies, for `capture = { name = { xpath = ".." } }` and
//! `expect.xpath`: expressions checked when a step is validated, a body parsed within bounds
//! (once for all the captures of a response, once for all its expectations), and results
//! turned into JSON values.
//!
//! The engine is `sxd-xpath` over an `sxd-document` tree (pure Rust, so it builds for the
//! wasm guests). What it gives:
//!
//! - Results: a node-set is the string values of its nodes in document order (one node: a
//!   string, several: an array of strings, none: "matched nothing"); `count(..)`, `sum(..)` and
//!   arithmetic give numbers, comparisons and `boolean(..)` booleans, `string(..)` strings.
//! - Namespaces: a prefix in an expression means what the response body binds it to (the first
//!   binding in document order when the body binds one prefix to several URIs), and `_` names
//!   the body's default namespace (`//_:entry` in an Atom feed), unless the body binds `_`
//!   itself. `*[local-name() = 'entry']` matches whatever the namespace.
//! - Bodies: UTF-8 text (a leading byte-order mark is skipped); a DTD is skipped, never read,
//!   so only the five predefined entities (`&amp;` ...) and character references are known.
//!   The host caps the body (`[http] max_response_bytes`, 10 MiB by default); before building
//!   a tree this module refuses a body past [`MAX_DEPTH`], [`MAX_ATTRIBUTES`] or [`MAX_NODES`],
//!   where the tree would outgrow a plugin's memory or CPU budget; expressions are bounded by
//!   [`MAX_EXPRESSION_BYTES`] and [`MAX_EXPRESSION_NESTING`].

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Number, Value};
use sxd_document::Package;
use sxd_document::dom::{ChildOfElement, ChildOfRoot, Element};
use sxd_xpath::{Context, Factory, Value as XValue};

use super::check::Checks;

/// Elements nested deeper than this are refused. The tree builder looks a default namespace up
/// through every ancestor, so building costs elements × depth (20,000 nested elements took
/// 0.75 s natively, and the time grows with the square), and a node's string value recurses
/// once per level.
pub const MAX_DEPTH: usize = 256;

/// An element with more attributes than this is refused: the tree builder checks each
/// attribute against every other (40,000 on one element took 2.4 s).
pub const MAX_ATTRIBUTES: usize = 256;

/// A body with more elements, attributes, comments, processing instructions and CDATA sections
/// than this is refused: a tree node costs up to some 300 bytes, so a 10 MiB body of empty
/// elements would need over a gigabyte. 250,000 nodes stay under about 70 MiB.
pub const MAX_NODES: usize = 250_000;

/// An expression longer than this (in bytes) is refused, and so is one whose parentheses and
/// brackets nest deeper than [`MAX_EXPRESSION_NESTING`]: the engine parses and evaluates by
/// recursion, and a guest's stack is small (10,000 nested parentheses overflow even a native
/// thread's 8 MiB).
pub const MAX_EXPRESSION_BYTES: usize = 2048;

/// See [`MAX_EXPRESSION_BYTES`].
pub const MAX_EXPRESSION_NESTING: usize = 32;

/// The prefix that names the body's default namespace.
pub const DEFAULT_NAMESPACE_PREFIX: &str = "_";

/// What an XPath 1.0 expression evaluates to (known from the expression alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A set of nodes (a path).
    Nodes,
    /// A number (`count(..)`, arithmetic).
    Number,
    /// A string (`string(..)`, `concat(..)`).
    String,
    /// A boolean (comparisons, `boolean(..)`).
    Boolean,
}

/// A checked XPath 1.0 expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XPath {
    text: String,
    kind: Kind,
    /// The namespace prefixes it names, each bound by the body before it is evaluated: the
    /// engine panics on a name test with an unbound prefix.
    prefixes: Vec<String>,
}

/// What an expression found in a body.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// The string values of the selected nodes, in document order.
    Nodes(Vec<String>),
    /// A number; XPath's NaN and infinities included.
    Number(f64),
    /// A string.
    String(String),
    /// A boolean.
    Boolean(bool),
}

/// Checks the XPath `value` of the field at `path`; `None` when it is a deferred template or
/// invalid (recorded, with what the engine said).
pub fn check(checks: &mut Checks, path: &str, value: &str) -> Option<XPath> {
    if checks.deferred(value) {
        return None;
    }
    match XPath::new(value) {
        Ok(xpath) => Some(xpath),
        Err(reason) => {
            checks.push(path, format!("invalid XPath `{value}`: {reason}"));
            None
        }
    }
}

impl XPath {
    /// Compiles `text`, then evaluates it once over an empty document: unknown functions,
    /// variables (none are defined) and wrong arguments show there, before any response.
    pub fn new(text: &str) -> Result<Self, String> {
        if text.len() > MAX_EXPRESSION_BYTES {
            return Err(format!(
                "the expression is longer than {MAX_EXPRESSION_BYTES} bytes"
            ));
        }
        let outside = outside_literals(text);
        if nesting(&outside) > MAX_EXPRESSION_NESTING {
            return Err(format!(
                "parentheses and brackets nest more than {MAX_EXPRESSION_NESTING} deep"
            ));
        }
        let prefixes = prefixes(&outside);
        let compiled = Factory::new()
            .build(text)
            .map_err(|err| describe_engine_error(&err.to_string()))?
            .ok_or_else(|| "the expression is empty".to_owned())?;
        let package = Package::new();
        let document = package.as_document();
        // The body binds the prefixes, and it is not there yet: any URI will do here.
        let mut context = Context::new();
        for prefix in &prefixes {
            context.set_namespace(prefix, "urn:runbook:validate");
        }
        let kind = compiled
            .evaluate(&context, document.root())
            .map(|value| kind_of(&value))
            .map_err(|err| describe_engine_error(&err.to_string()))?;
        Ok(Self {
            text: text.to_owned(),
            kind,
            prefixes,
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What the expression evaluates to.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Evaluates the expression over a parsed body.
    pub fn evaluate(&self, document: &XmlDocument) -> Result<Found, String> {
        if let Some(unbound) = self
            .prefixes
            .iter()
            .find(|prefix| !document.namespaces.contains_key(*prefix))
        {
            return Err(unknown_prefix(unbound, &document.namespaces));
        }
        // Compiling again costs microseconds, and keeps `XPath` (and so the compiled
        // expectations and captures) `Send`, which the engine's compiled form is not.
        let compiled = Factory::new()
            .build(&self.text)
            .ok()
            .flatten()
            .ok_or_else(|| format!("invalid XPath `{}`", self.text))?;
        let mut context = Context::new();
        for (prefix, uri) in &document.namespaces {
            context.set_namespace(prefix, uri);
        }
        let dom = document.package.as_document();
        let value = compiled
            .evaluate(&context, dom.root())
            .map_err(|err| describe_engine_error(&err.to_string()))?;
        Ok(match value {
            XValue::Nodeset(nodes) => Found::Nodes(
                nodes
                    .document_order()
                    .iter()
                    .map(|node| node.string_value())
                    .collect(),
            ),
            XValue::Number(number) => Found::Number(number),
            XValue::String(text) => Found::String(text),
            XValue::Boolean(value) => Found::Boolean(value),
        })
    }
}

fn kind_of(value: &XValue<'_>) -> Kind {
    match value {
        XValue::Nodeset(_) => Kind::Nodes,
        XValue::Number(_) => Kind::Number,
        XValue::String(_) => Kind::String,
        XValue::Boolean(_) => Kind::Boolean,
    }
}

/// The engine's error words, readable: its names for things are Rust's (`EmptyPredicate`,
/// `OwnedPrefixedName { prefix: None, local_part: "cont" }`).
fn describe_engine_error(text: &str) -> String {
    static NAME: LazyLock<Option<Regex>> = LazyLock::new(|| {
        Regex::new(
            r#"OwnedPrefixedName \{ prefix: (?:None|Some\("(?<prefix>[^"]*)"\)), local_part: "(?<local>[^"]*)" \}"#,
        )
        .ok()
    });
    let text = match NAME.as_ref() {
        Some(regex) => regex
            .replace_all(text, |found: &regex::Captures<'_>| {
                match found.name("prefix") {
                    Some(prefix) => format!("`{}:{}`", prefix.as_str(), &found["local"]),
                    None => format!("`{}`", &found["local"]),
                }
            })
            .into_owned(),
        None => text.to_owned(),
    };
    words(&text)
}

/// A prefix the body does not bind, with those it does.
fn unknown_prefix(prefix: &str, namespaces: &BTreeMap<String, String>) -> String {
    if namespaces.is_empty() {
        format!("unknown namespace prefix `{prefix}` (the body binds none)")
    } else {
        let bound: Vec<&str> = namespaces.keys().map(String::as_str).collect();
        format!(
            "unknown namespace prefix `{prefix}` (the body binds {})",
            bound.join(", ")
        )
    }
}

/// The expression with its string literals (`'..'`, `".."`; XPath 1.0 has no escapes) blanked
/// out, so that what they hold is not taken for syntax.
fn outside_literals(text: &str) -> String {
    let mut quote = None;
    text.chars()
        .map(|c| match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                ' '
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                ' '
            }
            None => c,
        })
        .collect()
}

/// How deep parentheses and brackets nest.
fn nesting(text: &str) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0;
    for c in text.chars() {
        match c {
            '(' | '[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The namespace prefixes of the qualified names in an expression (literals blanked out):
/// `p` of `p:name`, `p:*`, `@p:name`, `p:function()`, `$p:variable`, but not the axis of
/// `child::name`.
fn prefixes(text: &str) -> Vec<String> {
    static PREFIX: LazyLock<Option<Regex>> = LazyLock::new(|| {
        Regex::new(r"(?:^|[^\p{L}\p{N}_.\-])([\p{L}_][\p{L}\p{N}_.\-]*):[\p{L}_*]").ok()
    });
    let mut found: Vec<String> = PREFIX
        .as_ref()
        .map(|regex| {
            regex
                .captures_iter(text)
                .filter_map(|captures| captures.get(1))
                .map(|prefix| prefix.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.dedup();
    found
}

/// `CamelCase` words outside quotes in lower case, apart: `ExpectedElementEnd` → `expected
/// element end`.
fn words(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut quoted = false;
    let mut previous: Option<char> = None;
    for c in text.chars() {
        if c == '"' && previous != Some('\\') {
            quoted = !quoted;
        }
        if !quoted && c.is_ascii_uppercase() {
            if previous.is_some_and(|p| p.is_ascii_lowercase()) {
                out.push(' ');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
        previous = Some(c);
    }
    out
}

/// A response body parsed as XML, with the prefixes it binds.
pub struct XmlDocument {
    package: Package,
    namespaces: BTreeMap<String, String>,
}

impl std::fmt::Debug for XmlDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmlDocument")
            .field("namespaces", &self.namespaces)
            .finish_non_exhaustive()
    }
}

impl XmlDocument {
    /// Parses `text` as an XML document, within the bounds above. The error says what is
    /// wrong and where (line and column in the body).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        measure(text).map_err(|(offset, reason)| {
            let (line, column) = line_column(text, offset);
            format!(
                "the response body is too large for XPath: {reason} (line {line}, column {column})"
            )
        })?;
        let package = sxd_document::parser::parse(text).map_err(|err| {
            let (line, column) = line_column(text, err.location());
            format!(
                "the response body is not well-formed XML: {} (line {line}, column {column})",
                describe_xml_error(&err.to_string())
            )
        })?;
        let namespaces = bound_prefixes(&package);
        Ok(Self {
            package,
            namespaces,
        })
    }

    /// The prefixes an expression may use: prefix to namespace URI.
    pub fn namespaces(&self) -> &BTreeMap<String, String> {
        &self.namespaces
    }
}

/// A body's XML, parsed on first use and kept for every expression evaluated over it.
#[derive(Debug)]
pub struct LazyDocument<'a> {
    text: Option<&'a str>,
    parsed: OnceCell<Result<XmlDocument, String>>,
}

impl<'a> LazyDocument<'a> {
    /// Nothing is parsed until [`get`](Self::get); `None`: the body is not UTF-8 text.
    pub fn new(text: Option<&'a str>) -> Self {
        Self {
            text,
            parsed: OnceCell::new(),
        }
    }

    /// The document, or why there is none.
    pub fn get(&self) -> Result<&XmlDocument, &str> {
        self.parsed
            .get_or_init(|| match self.text {
                Some(text) => XmlDocument::parse(text),
                None => Err("the response body is not text".to_owned()),
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

/// Counts what the tree would hold, in one pass over the bytes, and stops at the first bound
/// crossed: its byte offset and which bound. Text cannot hold `<` (it must be escaped), so in
/// a well-formed body every `<` opens markup; comments, CDATA sections and processing
/// instructions are skipped whole, since they may. On a body that is not well-formed the
/// counts are rough, and the parser then says what is wrong.
fn measure(text: &str) -> Result<(), (usize, String)> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut nodes = 0usize;
    let mut at = 0;
    while let Some(found) = bytes[at..].iter().position(|&b| b == b'<') {
        let start = at + found;
        let rest = &bytes[start..];
        at = start + 1;
        if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            continue;
        }
        let skipped = [
            (&b"<!--"[..], &b"-->"[..]),
            (b"<![CDATA[", b"]]>"),
            (b"<?", b"?>"),
        ]
        .iter()
        .find(|(open, _)| rest.starts_with(open))
        .map(|(open, close)| skip_past(bytes, start + open.len(), close));
        if let Some(next) = skipped {
            nodes += 1;
            at = next;
        } else if rest.starts_with(b"<!") {
            // The DOCTYPE and its declarations: no nodes.
            continue;
        } else {
            // A start tag, to its `>` outside quoted attribute values.
            let mut quote = None;
            let mut attributes = 0usize;
            let mut end = None;
            for (offset, &b) in bytes[at..].iter().enumerate() {
                match (quote, b) {
                    (Some(q), _) if b == q => quote = None,
                    (Some(_), _) => {}
                    (None, b'"' | b'\'') => quote = Some(b),
                    (None, b'=') => attributes += 1,
                    (None, b'>') => {
                        end = Some(at + offset);
                        break;
                    }
                    _ => {}
                }
            }
            // An unclosed tag: the parser says so.
            let Some(end) = end else { break };
            if attributes > MAX_ATTRIBUTES {
                return Err((
                    start,
                    format!("an element has more than {MAX_ATTRIBUTES} attributes"),
                ));
            }
            nodes += 1 + attributes;
            if bytes[end - 1] != b'/' {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err((
                        start,
                        format!("elements nest more than {MAX_DEPTH} levels deep"),
                    ));
                }
            }
            at = end + 1;
        }
        if nodes > MAX_NODES {
            return Err((
                start,
                format!(
                    "more than {MAX_NODES} elements, attributes, comments and processing instructions"
                ),
            ));
        }
    }
    Ok(())
}

/// The offset just past the first `close` at or after `from`, or the end.
fn skip_past(bytes: &[u8], from: usize, close: &[u8]) -> usize {
    bytes[from.min(bytes.len())..]
        .windows(close.len())
        .position(|window| window == close)
        .map_or(bytes.len(), |found| from + found + close.len())
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    // The parser's offsets fall between characters; be safe with any other.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The parser's `XML parsing error at 8: {MismatchedElementEndName}` as words: `mismatched
/// element end name`; several things it expected as one list.
fn describe_xml_error(text: &str) -> String {
    let inner = text
        .split_once(": ")
        .map_or(text, |(_, rest)| rest)
        .trim_start_matches('{')
        .trim_end_matches('}');
    let items: Vec<String> = split_items(inner)
        .into_iter()
        .map(|item| match item.split_once('(') {
            // `Expected("<?xml")`: the text it expected.
            Some((name, quoted)) => format!("{} {}", words(name), quoted.trim_end_matches(')')),
            None => words(item),
        })
        .collect();
    let expected: Option<Vec<&str>> = items
        .iter()
        .map(|item| item.strip_prefix("expected "))
        .collect();
    match expected {
        Some(things) if things.len() > 1 => {
            let (last, rest) = things.split_last().unwrap_or((&"", &[]));
            format!("expected {} or {last}", rest.join(", "))
        }
        _ => items.join(", "),
    }
}

/// Splits `a, b("x, y"), c` at the commas outside quotes.
fn split_items(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    let mut previous = None;
    for (at, c) in text.char_indices() {
        match c {
            '"' if previous != Some('\\') => quoted = !quoted,
            ',' if !quoted => {
                items.push(text[start..at].trim());
                start = at + 1;
            }
            _ => {}
        }
        previous = Some(c);
    }
    items.push(text[start..].trim());
    items.retain(|item| !item.is_empty());
    items
}

/// The prefixes the body uses on element and attribute names, first binding in document
/// order, and `_` for the first default namespace an unprefixed element is in.
fn bound_prefixes(package: &Package) -> BTreeMap<String, String> {
    let document = package.as_document();
    let mut prefixes = BTreeMap::new();
    let mut default = None;
    // Depth-first with a stack: the tree may be as deep as `MAX_DEPTH`, and the order only
    // needs to be the document's (children pushed in reverse).
    let mut stack: Vec<Element<'_>> = document
        .root()
        .children()
        .into_iter()
        .rev()
        .filter_map(|child| match child {
            ChildOfRoot::Element(element) => Some(element),
            _ => None,
        })
        .collect();
    while let Some(element) = stack.pop() {
        if let Some(uri) = element.name().namespace_uri() {
            match element.preferred_prefix() {
                Some(prefix) => {
                    prefixes
                        .entry(prefix.to_owned())
                        .or_insert_with(|| uri.to_owned());
                }
                None => {
                    default.get_or_insert_with(|| uri.to_owned());
                }
            }
        }
        for attribute in element.attributes() {
            if let (Some(uri), Some(prefix)) = (
                attribute.name().namespace_uri(),
                attribute.preferred_prefix(),
            ) {
                prefixes
                    .entry(prefix.to_owned())
                    .or_insert_with(|| uri.to_owned());
            }
        }
        stack.extend(
            element
                .children()
                .into_iter()
                .rev()
                .filter_map(|child| match child {
                    ChildOfElement::Element(element) => Some(element),
                    _ => None,
                }),
        );
    }
    if let Some(uri) = default {
        prefixes
            .entry(DEFAULT_NAMESPACE_PREFIX.to_owned())
            .or_insert(uri);
    }
    prefixes
}

impl Found {
    /// As a capture stores it: one node's string value, several as an array of them, a number
    /// as a JSON number (whole numbers without a fraction; NaN and the infinities as XPath
    /// writes them, `"NaN"`, `"Infinity"`), a string, a boolean. `None` for no node at all.
    pub fn to_json(&self) -> Option<Value> {
        match self {
            Found::Nodes(texts) => match texts.as_slice() {
                [] => None,
                [one] => Some(Value::String(one.clone())),
                many => Some(Value::Array(
                    many.iter()
                        .map(|text| Value::String(text.clone()))
                        .collect(),
                )),
            },
            Found::Number(number) => Some(number_json(*number)),
            Found::String(text) => Some(Value::String(text.clone())),
            Found::Boolean(value) => Some(Value::Bool(*value)),
        }
    }

    /// Whether the result is an empty node-set.
    pub fn is_empty(&self) -> bool {
        matches!(self, Found::Nodes(texts) if texts.is_empty())
    }

    /// Each value as text, for `matches`: node string values, a number as XPath writes it
    /// (`2`, `1.5`, `NaN`), `true`/`false`.
    pub fn texts(&self) -> Vec<String> {
        match self {
            Found::Nodes(texts) => texts.clone(),
            Found::Number(number) => vec![number_text(*number)],
            Found::String(text) => vec![text.clone()],
            Found::Boolean(value) => vec![value.to_string()],
        }
    }

    /// Whether the result equals `expected`, compared as the expected value's type: a number
    /// by value (a node's text read as a number: `"2.0"` equals `2`), a string as text (a
    /// number written as XPath writes it), a boolean with a boolean or the text
    /// `true`/`false`; an array item by item with the nodes, in document order. One node
    /// compares with a scalar; several only with an array.
    pub fn equals(&self, expected: &Value) -> bool {
        match (self, expected) {
            (Found::Nodes(texts), Value::Array(items)) => {
                texts.len() == items.len()
                    && texts
                        .iter()
                        .zip(items)
                        .all(|(text, item)| scalar_equals(&Scalar::Text(text), item))
            }
            (Found::Nodes(texts), _) => match texts.as_slice() {
                [one] => scalar_equals(&Scalar::Text(one), expected),
                _ => false,
            },
            (Found::Number(number), _) => scalar_equals(&Scalar::Number(*number), expected),
            (Found::String(text), _) => scalar_equals(&Scalar::Text(text), expected),
            (Found::Boolean(value), _) => scalar_equals(&Scalar::Boolean(*value), expected),
        }
    }
}

enum Scalar<'a> {
    Text(&'a str),
    Number(f64),
    Boolean(bool),
}

fn scalar_equals(actual: &Scalar<'_>, expected: &Value) -> bool {
    match expected {
        Value::Number(expected) => {
            let actual = match actual {
                // XPath's number(): the text, trimmed, as a number.
                Scalar::Text(text) => text.trim().parse::<f64>().ok(),
                Scalar::Number(number) => Some(*number),
                Scalar::Boolean(_) => None,
            };
            actual.is_some_and(|actual| Some(actual) == expected.as_f64())
        }
        Value::String(expected) => match actual {
            Scalar::Text(text) => text == expected,
            Scalar::Number(number) => number_text(*number) == *expected,
            Scalar::Boolean(value) => value.to_string() == *expected,
        },
        Value::Bool(expected) => match actual {
            Scalar::Text(text) => *text == expected.to_string(),
            Scalar::Boolean(value) => value == expected,
            Scalar::Number(_) => false,
        },
        _ => false,
    }
}

/// A number as JSON: whole numbers as integers (`count(..)` is `2`, not `2.0`).
fn number_json(number: f64) -> Value {
    // 2^53: past it not every whole number has an f64, and i64 would claim a precision the
    // value does not have.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if number.fract() == 0.0 && number.abs() <= EXACT {
        // Exact: a whole number within ±2^53 converts without loss.
        return Value::from(number as i64);
    }
    Number::from_f64(number).map_or_else(|| Value::String(number_text(number)), Value::Number)
}

/// A number as XPath's string() writes it.
fn number_text(number: f64) -> String {
    if number.is_nan() {
        "NaN".to_owned()
    } else if number.is_infinite() {
        if number > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .to_owned()
    } else if number == 0.0 {
        // -0 too.
        "0".to_owned()
    } else {
        number.to_string()
    }
}

/// Whether `value` is a valid XPath `equals`: a string, number or boolean, or an array of them.
pub fn check_expected(value: &Value) -> Result<(), String> {
    let scalar =
        |value: &Value| matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_));
    match value {
        Value::Array(items) if items.iter().all(scalar) => Ok(()),
        Value::Array(_) => Err(
            "an array to compare with the nodes may hold only strings, numbers and booleans"
                .to_owned(),
        ),
        Value::Null => Err(
            "an XPath result is never null: to expect no node, write `exists = false`".to_owned(),
        ),
        Value::Object(_) => Err("expected a string, number, boolean or array".to_owned()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::web::check::Phase;
    use serde_json::json;

    const ORDERS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<orders count="2">
  <order id="o-1"><total>12.50</total><state>open</state></order>
  <order id="o-2"><total>7</total><state>paid</state></order>
  <note><![CDATA[a < b]]></note>
</orders>"#;

    fn eval(xml: &str, expression: &str) -> Result<Found, String> {
        let document = XmlDocument::parse(xml)?;
        XPath::new(expression)?.evaluate(&document)
    }

    #[test]
    fn results_are_typed() {
        let cases: &[(&str, Found, Option<Value>)] = &[
            (
                "//order[1]/@id",
                Found::Nodes(vec!["o-1".into()]),
                Some(json!("o-1")),
            ),
            (
                "//order/@id",
                Found::Nodes(vec!["o-1".into(), "o-2".into()]),
                Some(json!(["o-1", "o-2"])),
            ),
            (
                "//order[2]/state",
                Found::Nodes(vec!["paid".into()]),
                Some(json!("paid")),
            ),
            (
                "//note",
                Found::Nodes(vec!["a < b".into()]),
                Some(json!("a < b")),
            ),
            ("//missing", Found::Nodes(vec![]), None),
            ("count(//order)", Found::Number(2.0), Some(json!(2))),
            ("sum(//total)", Found::Number(19.5), Some(json!(19.5))),
            (
                "number(//state)",
                Found::Number(f64::NAN),
                Some(json!("NaN")),
            ),
            (
                "1 div 0",
                Found::Number(f64::INFINITY),
                Some(json!("Infinity")),
            ),
            (
                "count(//order) > 1",
                Found::Boolean(true),
                Some(json!(true)),
            ),
            (
                "string(/orders/@count)",
                Found::String("2".into()),
                Some(json!("2")),
            ),
            (
                "concat(//order[1]/@id, '!')",
                Found::String("o-1!".into()),
                Some(json!("o-1!")),
            ),
        ];
        for (expression, found, json) in cases {
            let got = eval(ORDERS, expression).unwrap();
            match (&got, found) {
                // NaN is not equal to itself.
                (Found::Number(a), Found::Number(b)) if b.is_nan() => {
                    assert!(a.is_nan(), "{expression}: {got:?}")
                }
                _ => assert_eq!(&got, found, "{expression}"),
            }
            assert_eq!(&got.to_json(), json, "{expression}");
        }
    }

    #[test]
    fn kinds_are_known_before_any_body() {
        let cases = [
            ("//a/@id", Kind::Nodes),
            ("count(//error)", Kind::Number),
            ("//a = 'x'", Kind::Boolean),
            ("string(//a)", Kind::String),
            ("ns:a/ns:b", Kind::Nodes),
        ];
        for (expression, kind) in cases {
            assert_eq!(XPath::new(expression).unwrap().kind(), kind, "{expression}");
        }
    }

    #[test]
    fn bad_expressions_say_why() {
        let cases = [
            ("//order[", "empty predicate"),
            ("//order/", "trailing slash"),
            ("count(//a", "ran out of input"),
            ("1 +", "right hand side expression missing"),
            ("", "the expression is empty"),
            ("cont(//error)", "unknown function `cont`"),
            ("$total", "unknown variable `total`"),
            ("count()", "not enough arguments, expected 1 but had 0"),
            ("count('x')", "argument was expected to be a nodeset"),
        ];
        for (expression, reason) in cases {
            let err = XPath::new(expression).unwrap_err();
            assert!(err.contains(reason), "{expression}: {err}");
        }
    }

    #[test]
    fn check_records_the_field_and_defers_templates() {
        let mut checks = Checks::new(Phase::Validate);
        assert!(check(&mut checks, "capture.id.xpath", "//order/@id").is_some());
        assert!(check(&mut checks, "capture.t.xpath", "{{ params.path }}").is_none());
        assert!(check(&mut checks, "capture.bad.xpath", "//order[").is_none());
        let errors = checks.into_errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "capture.bad.xpath");
        assert_eq!(
            errors[0].message,
            "invalid XPath `//order[`: empty predicate"
        );
    }

    #[test]
    fn bodies_that_are_not_xml_say_where() {
        let cases = [
            (
                "<a><b></a>",
                "mismatched element end name (line 1, column 9)",
            ),
            ("<a>\n  <b x=1/></a>", "expected opening quote"),
            ("<a>\n  <b x=1/></a>", "(line 2, column 8)"),
            ("not xml", "(line 1, column 1)"),
            ("{\"a\": 1}", "expected "),
            (
                "<a>&nbsp;</a>",
                "unknown named reference (line 1, column 5)",
            ),
            ("<a>", "unclosed element"),
            ("", "not well-formed XML"),
        ];
        for (body, expected) in cases {
            let err = XmlDocument::parse(body).unwrap_err();
            assert!(
                err.starts_with("the response body is not well-formed XML: "),
                "{body}: {err}"
            );
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn a_byte_order_mark_and_a_doctype_are_skipped() {
        let found = eval("\u{feff}<a>1</a>", "string(/a)").unwrap();
        assert_eq!(found, Found::String("1".into()));
        let found = eval(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE a>\n<a>2</a>",
            "number(/a)",
        )
        .unwrap();
        assert_eq!(found, Found::Number(2.0));
    }

    #[test]
    fn prefixes_are_the_bodys_and_underscore_is_its_default_namespace() {
        let feed = r#"<feed xmlns="http://www.w3.org/2005/Atom" xmlns:m="urn:meta">
            <entry m:rank="1"><title>first</title></entry>
            <m:extra xmlns:m="urn:other">x</m:extra>
        </feed>"#;
        let document = XmlDocument::parse(feed).unwrap();
        assert_eq!(
            document.namespaces(),
            &BTreeMap::from([
                ("_".to_owned(), "http://www.w3.org/2005/Atom".to_owned()),
                ("m".to_owned(), "urn:meta".to_owned()),
            ])
        );
        let eval = |expression: &str| XPath::new(expression).unwrap().evaluate(&document);
        assert_eq!(eval("//entry").unwrap(), Found::Nodes(vec![]));
        assert_eq!(
            eval("//_:entry/_:title").unwrap(),
            Found::Nodes(vec!["first".into()])
        );
        assert_eq!(
            eval("//_:entry/@m:rank").unwrap(),
            Found::Nodes(vec!["1".into()])
        );
        assert_eq!(
            eval("//*[local-name() = 'title']").unwrap(),
            Found::Nodes(vec!["first".into()])
        );
        // `m` is urn:meta, its first binding: the element bound to urn:other is not `m:extra`.
        assert_eq!(eval("//m:extra").unwrap(), Found::Nodes(vec![]));
        let err = eval("//x:entry").unwrap_err();
        assert_eq!(err, "unknown namespace prefix `x` (the body binds _, m)");
        // The engine would panic on a name test with an unbound prefix: it is never reached.
        let plain = XmlDocument::parse("<a><b/></a>").unwrap();
        let err = XPath::new("count(//b | //x:b)")
            .unwrap()
            .evaluate(&plain)
            .unwrap_err();
        assert_eq!(err, "unknown namespace prefix `x` (the body binds none)");
    }

    #[test]
    fn prefixes_are_found_outside_literals_and_axes() {
        let cases: &[(&str, &[&str])] = &[
            ("//a/b", &[]),
            ("child::a/descendant-or-self::node()", &[]),
            ("child::p:a", &["p"]),
            ("//p:*/@q:id", &["p", "q"]),
            ("count(//soap:Body) + count(//soap:Fault)", &["soap"]),
            ("concat('x:y', \"a:b\", //m-1.x:c)", &["m-1.x"]),
            ("//a[@x = 'p:q']", &[]),
            ("$v:x", &["v"]),
        ];
        for (expression, expected) in cases {
            assert_eq!(
                prefixes(&outside_literals(expression)),
                *expected,
                "{expression}"
            );
        }
    }

    #[test]
    fn expressions_past_the_bounds_are_refused() {
        let deep = format!(
            "{}1{}",
            "(".repeat(MAX_EXPRESSION_NESTING + 1),
            ")".repeat(MAX_EXPRESSION_NESTING + 1)
        );
        assert_eq!(
            XPath::new(&deep).unwrap_err(),
            "parentheses and brackets nest more than 32 deep"
        );
        let fine = format!(
            "{}1{}",
            "(".repeat(MAX_EXPRESSION_NESTING),
            ")".repeat(MAX_EXPRESSION_NESTING)
        );
        assert_eq!(XPath::new(&fine).unwrap().kind(), Kind::Number);
        // Brackets inside a literal are text.
        let literal = format!("string('{}')", "(".repeat(100));
        assert!(XPath::new(&literal).is_ok());
        let long = format!("1{}", " + 1".repeat(MAX_EXPRESSION_BYTES / 4));
        assert_eq!(
            XPath::new(&long).unwrap_err(),
            "the expression is longer than 2048 bytes"
        );
    }

    #[test]
    fn bodies_past_the_bounds_are_refused_before_a_tree_is_built() {
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        let err = XmlDocument::parse(&deep).unwrap_err();
        assert_eq!(
            err,
            format!(
                "the response body is too large for XPath: elements nest more than {MAX_DEPTH} levels deep (line 1, column {})",
                3 * MAX_DEPTH + 1
            )
        );
        let at_the_limit = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(XmlDocument::parse(&at_the_limit).is_ok());
        // Siblings do not nest, self-closing elements neither.
        let wide = format!("<r>{}</r>", "<a><b/></a>".repeat(MAX_DEPTH * 2));
        assert!(XmlDocument::parse(&wide).is_ok());

        let attributes: String = (0..=MAX_ATTRIBUTES)
            .map(|i| format!(" a{i}=\"=\""))
            .collect();
        let err = XmlDocument::parse(&format!("<r>\n<a{attributes}/></r>")).unwrap_err();
        assert!(
            err.contains("an element has more than 256 attributes (line 2, column 1)"),
            "{err}"
        );

        let many = format!("<r>{}</r>", "<a/>".repeat(MAX_NODES));
        let err = XmlDocument::parse(&many).unwrap_err();
        assert!(
            err.contains(&format!("more than {MAX_NODES} elements")),
            "{err}"
        );
        // Markup inside comments, CDATA and processing instructions is not counted.
        let hidden = format!(
            "<r><!-- {0} --><![CDATA[{0}]]><?pi {0}?></r>",
            "<a>".repeat(MAX_DEPTH + 1)
        );
        assert!(XmlDocument::parse(&hidden).is_ok());
    }

    #[test]
    fn equality_compares_as_the_expected_type() {
        let nodes = |texts: &[&str]| Found::Nodes(texts.iter().map(|t| (*t).to_owned()).collect());
        let cases = [
            (Found::Number(2.0), json!(2), true),
            (Found::Number(2.0), json!(2.0), true),
            (Found::Number(2.0), json!("2"), true),
            (Found::Number(2.5), json!(2), false),
            (Found::Number(f64::NAN), json!("NaN"), true),
            (nodes(&["12.50"]), json!(12.5), true),
            (nodes(&["12.50"]), json!("12.5"), false),
            (nodes(&["open"]), json!("open"), true),
            (nodes(&["true"]), json!(true), true),
            (nodes(&["a", "b"]), json!(["a", "b"]), true),
            (nodes(&["a", "b"]), json!(["b", "a"]), false),
            (nodes(&["1", "2"]), json!([1, 2]), true),
            (nodes(&["a", "b"]), json!("a"), false),
            (nodes(&[]), json!([]), true),
            (nodes(&[]), json!(""), false),
            (Found::Boolean(true), json!(true), true),
            (Found::Boolean(false), json!("false"), true),
            (Found::Boolean(true), json!(1), false),
            (Found::String("x".into()), json!("x"), true),
        ];
        for (found, expected, equal) in cases {
            assert_eq!(found.equals(&expected), equal, "{found:?} = {expected}");
        }
    }

    #[test]
    fn expected_values_must_be_comparable() {
        assert!(check_expected(&json!(0)).is_ok());
        assert!(check_expected(&json!(["a", 1, true])).is_ok());
        assert!(
            check_expected(&json!(null))
                .unwrap_err()
                .contains("exists = false")
        );
        assert!(check_expected(&json!([{"a": 1}])).is_err());
    }
}
