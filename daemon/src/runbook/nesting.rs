//! How deeply a template or `if` expression nests, found by one linear scan of its tokens
//! before MiniJinja sees it.
//!
//! MiniJinja parses some constructs by recursing once per level with no limit of its own
//! (`not not ...`, `- - ...`, `elif` chains), and builds others into trees as deep as they are
//! long (`a ~ b ~ ...`, `x | f | f ...`, `x.a.b...`) that its compiler, its variable listing
//! and the trees' drop then walk recursively. A few thousand levels overflow the stack of the
//! thread that parses them, which aborts the whole daemon: on a hot reload, and again on
//! every start while the file is there. So the loader measures first and refuses a template
//! deeper than [`super::limits::MAX_TEMPLATE_DEPTH`] without parsing it.
//!
//! TOML nesting is measured here too ([`toml_too_deep`]), for the same reason.
//!
//! The measure is an upper bound on the depth of the tree MiniJinja would build, counted
//! over the template's tokens as MiniJinja's lexer splits them: within one expression every
//! operator (`+`, `~`, `|`, `.`, `==`, `not`, `and`, `is`, `if`, ...) adds a level, a bracket
//! (`(`, `[`, `{`) adds a level to what it holds plus the operators around it, and `,`/`:`
//! separate siblings, which do not add up. Block tags (`{% if %}`, `{% for %}`, each `elif`,
//! ...) add a level to everything inside them. Plain data in a bracket (`[1, 2, 3, ...]`)
//! costs one level however long it is.

/// The nesting of a template (a string that may hold `{{ }}`, `{% %}` and `{# #}`).
pub fn template_depth(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut blocks = Blocks::default();
    let mut deepest = 0;
    let mut i = 0;
    while let Some(found) = find(bytes, i, b"{") {
        let marker = found + 2;
        match bytes.get(found + 1) {
            Some(b'{') => {
                let tag = scan_tag(bytes, marker, End::Variable);
                deepest = deepest.max(blocks.depth + tag.depth);
                i = tag.end;
            }
            Some(b'%') => {
                if let Some(after) = raw_block_end(bytes, marker) {
                    i = after;
                    continue;
                }
                let tag = scan_tag(bytes, marker, End::Block);
                deepest = deepest.max(blocks.depth + tag.depth);
                blocks.tag(&text[tag.keyword.clone()], tag.assigns);
                deepest = deepest.max(blocks.depth);
                i = tag.end;
            }
            Some(b'#') => {
                i = find(bytes, marker, b"#}").map_or(bytes.len(), |end| end + 2);
            }
            _ => i = found + 1,
        }
    }
    deepest
}

/// The nesting of an `if` expression (no delimiters: the whole text is one expression).
pub fn expression_depth(text: &str) -> usize {
    scan_tag(text.as_bytes(), 0, End::Never).depth
}

/// The span of the first `[` or `{` of `source` that opens more than `limit` arrays and
/// inline tables inside each other, counted on the tokens of the lexer `toml` parses with.
///
/// `toml` has a limit of its own (80), but its count drifts on some invalid input (a `{`
/// where a key belongs is closed without having been opened), after which its parser, which
/// recurses once per level, follows any nesting until the stack overflows. This count cannot
/// drift below the parser's depth: the parser goes one level deeper only at an opening token,
/// counted here too, and a closing token is counted only when it matches the innermost open
/// one, which then always closes it in the parser as well.
pub fn toml_too_deep(source: &str, limit: usize) -> Option<std::ops::Range<usize>> {
    use toml_parser::lexer::TokenKind;
    // `true` for an array, `false` for an inline table; never longer than `limit + 1`.
    let mut open: Vec<bool> = Vec::new();
    for token in toml_parser::Source::new(source).lex() {
        match token.kind() {
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => {
                open.push(token.kind() == TokenKind::LeftSquareBracket);
                if open.len() > limit {
                    return Some(token.span().start()..token.span().end());
                }
            }
            TokenKind::RightSquareBracket if open.last() == Some(&true) => {
                open.pop();
            }
            TokenKind::RightCurlyBracket if open.last() == Some(&false) => {
                open.pop();
            }
            _ => {}
        }
    }
    None
}

/// Where a tag ends.
#[derive(Clone, Copy)]
enum End {
    /// At `}}` (or `-}}`, `+}}`) outside brackets.
    Variable,
    /// At `%}` (or `-%}`, `+%}`) outside brackets.
    Block,
    /// At the end of the text: a standalone expression.
    Never,
}

/// What a scan of one tag found.
struct Tag {
    /// An upper bound of the depth of its expression tree.
    depth: usize,
    /// The byte range of its first word (the statement of a block tag); empty if none.
    keyword: std::ops::Range<usize>,
    /// Whether it has an `=` that is not part of `==` (a `{% set x = ... %}` is no block).
    assigns: bool,
    /// The byte after its closing delimiter, or the end of the text.
    end: usize,
}

/// One bracket level of an expression: the operators of the sibling being read, the deepest
/// bracket inside it so far, and the deepest sibling already read.
#[derive(Default)]
struct Level {
    operators: usize,
    inner: usize,
    deepest: usize,
}

impl Level {
    /// A `,` or `:` (or the closing bracket) ends a sibling.
    fn end_sibling(&mut self) {
        self.deepest = self.deepest.max(self.operators + self.inner);
        self.operators = 0;
        self.inner = 0;
    }
}

/// Scans one tag's expression from `start` (just after `{{` or `{%`) to its closing
/// delimiter, counting as MiniJinja's lexer tokenizes: strings are skipped whole, and a
/// delimiter only closes the tag when no bracket is open.
fn scan_tag(bytes: &[u8], start: usize, end: End) -> Tag {
    let closing: &[u8] = match end {
        End::Variable => b"}}",
        End::Block => b"%}",
        End::Never => b"",
    };
    let mut levels = vec![Level::default()];
    // As MiniJinja counts it: an unmatched closing bracket makes it negative, and then no
    // delimiter closes the tag.
    let mut balance: isize = 0;
    let mut keyword = start..start;
    let mut assigns = false;
    let mut first_token = true;
    let mut i = start;
    // `{{-` and `{%+` control whitespace; the sign is part of the delimiter.
    if !closing.is_empty() && matches!(bytes.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let mut finished = bytes.len();
    while i < bytes.len() {
        let byte = bytes[i];
        if balance == 0 && !closing.is_empty() {
            let rest = &bytes[i..];
            if rest.starts_with(closing) {
                finished = i + closing.len();
                break;
            }
            if matches!(byte, b'-' | b'+') && rest[1..].starts_with(closing) {
                finished = i + 1 + closing.len();
                break;
            }
        }
        if byte.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let token_start = i;
        let level = levels
            .last_mut()
            .expect("the outermost level is never popped");
        match byte {
            b'\'' | b'"' => i = skip_string(bytes, i),
            b'0'..=b'9' => {
                // A number's `.` and exponent sign are counted as operators below, which can
                // only overestimate.
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                if first_token {
                    keyword = token_start..i;
                }
                if matches!(
                    &bytes[token_start..i],
                    b"not" | b"and" | b"or" | b"in" | b"is" | b"if" | b"else"
                ) {
                    level.operators += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                balance += 1;
                levels.push(Level::default());
                i += 1;
            }
            b')' | b']' | b'}' => {
                balance -= 1;
                if levels.len() > 1 {
                    close_level(&mut levels);
                }
                i += 1;
            }
            b',' | b':' => {
                level.end_sibling();
                i += 1;
            }
            b'=' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 1;
                } else {
                    assigns = true;
                }
                level.operators += 1;
                i += 1;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'~' | b'|' | b'.' | b'<' | b'>' | b'!' => {
                level.operators += 1;
                i += 1;
            }
            // Anything else is a syntax error for MiniJinja; it nests nothing.
            _ => i += 1,
        }
        first_token = false;
    }
    // Brackets still open at the end are a syntax error, but they were read as nested.
    while levels.len() > 1 {
        close_level(&mut levels);
    }
    let outermost = &mut levels[0];
    outermost.end_sibling();
    Tag {
        depth: outermost.deepest,
        keyword,
        assigns,
        end: finished,
    }
}

/// Closes the innermost bracket level: it is one level deeper than its deepest sibling, and
/// sits inside the sibling being read one level out.
fn close_level(levels: &mut Vec<Level>) {
    if let Some(mut inner) = levels.pop() {
        inner.end_sibling();
        if let Some(outer) = levels.last_mut() {
            outer.inner = outer.inner.max(inner.deepest + 1);
        }
    }
}

/// The byte after the string literal starting at `start` (its quote), honouring backslash
/// escapes; the end of the text when it is not closed.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            byte if byte == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The block statements open around the current point of a template, as MiniJinja nests
/// them: each `elif` nests one level deeper inside its `if`, and `endif` closes them all.
#[derive(Default)]
struct Blocks {
    /// Levels each open block adds (1, or 1 + its `elif`s for an `if`).
    open: Vec<usize>,
    depth: usize,
}

impl Blocks {
    fn tag(&mut self, keyword: &str, assigns: bool) {
        match keyword {
            "if" | "for" | "with" | "macro" | "call" | "filter" | "block" | "autoescape" => {
                self.open.push(1);
                self.depth += 1;
            }
            // `{% set x %}...{% endset %}` is a block; `{% set x = 1 %}` is not.
            "set" if !assigns => {
                self.open.push(1);
                self.depth += 1;
            }
            "elif" => {
                if let Some(levels) = self.open.last_mut() {
                    *levels += 1;
                    self.depth += 1;
                }
            }
            keyword if keyword.starts_with("end") => {
                if let Some(levels) = self.open.pop() {
                    self.depth -= levels;
                }
            }
            _ => {}
        }
    }
}

/// If a `{% raw %}` tag starts at `marker` (just after its `{%`), the byte after its
/// `{% endraw %}`, or the end of the text when it has none: nothing in between is template
/// syntax.
fn raw_block_end(bytes: &[u8], marker: usize) -> Option<usize> {
    let after_raw = basic_tag(bytes, marker, b"raw")?;
    let mut i = after_raw;
    while let Some(found) = find(bytes, i, b"{%") {
        if let Some(end) = basic_tag(bytes, found + 2, b"endraw") {
            return Some(end);
        }
        i = found + 2;
    }
    Some(bytes.len())
}

/// The byte after `%}` when the tag starting at `at` (after `{%`) is just the word `name`,
/// with optional whitespace control and spaces, as MiniJinja's lexer recognises raw blocks.
fn basic_tag(bytes: &[u8], at: usize, name: &[u8]) -> Option<usize> {
    let mut i = at;
    if matches!(bytes.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    if !bytes[i.min(bytes.len())..].starts_with(name) {
        return None;
    }
    i += name.len();
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    if matches!(bytes.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    bytes[i.min(bytes.len())..]
        .starts_with(b"%}")
        .then_some(i + 2)
}

/// The position of `needle` in `bytes` at or after `from`.
fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| from + at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_templates_are_shallow() {
        assert_eq!(template_depth("plain text"), 0);
        assert_eq!(template_depth("{{ params.env }}"), 1);
        assert_eq!(
            template_depth("{{ steps.build.output.stdout | trim }}-{{ run.id }}"),
            4
        );
        assert_eq!(template_depth("{{ [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] }}"), 1);
        assert_eq!(
            template_depth("{% for x in items %}{{ x.name }}{% endfor %}"),
            2
        );
        assert_eq!(expression_depth("steps.d.status == 'succeeded'"), 3);
        // Delimiters inside strings and comments are not tags.
        assert_eq!(template_depth("{{ '}}' ~ \"{{\" }}"), 1);
        assert_eq!(template_depth("{# {{ not not not x }} #}{{ x }}"), 0);
        assert_eq!(
            template_depth("{% raw %}{{ not not not x }}{% endraw %}{{ a.b }}"),
            1
        );
    }

    #[test]
    fn every_kind_of_chain_counts() {
        let n = 5_000;
        for (what, text) in [
            ("not", format!("{{{{ {}x }}}}", "not ".repeat(n))),
            ("negation", format!("{{{{ {}1 }}}}", "-".repeat(n))),
            ("filters", format!("{{{{ x{} }}}}", " | trim".repeat(n))),
            ("concatenation", format!("{{{{ x{} }}}}", " ~ x".repeat(n))),
            ("attributes", format!("{{{{ x{} }}}}", ".a".repeat(n))),
            ("tests", format!("{{{{ x{} }}}}", " is defined".repeat(n))),
            (
                "parentheses",
                format!("{{{{ {}x{} }}}}", "(".repeat(n), ")".repeat(n)),
            ),
            (
                "lists",
                format!("{{{{ {}1{} }}}}", "[".repeat(n), "]".repeat(n)),
            ),
            (
                "nested ifs",
                format!("{}x{}", "{% if a %}".repeat(n), "{% endif %}".repeat(n)),
            ),
            (
                "elifs",
                format!("{{% if a %}}{}{{% endif %}}", "{% elif b %}x".repeat(n)),
            ),
        ] {
            let depth = template_depth(&text);
            assert!(depth >= n, "{what}: {depth}");
        }
        assert!(expression_depth(&format!("{}true", "not ".repeat(n))) >= n);
        assert!(expression_depth(&format!("x{}", "|trim".repeat(n))) >= n);
    }

    #[test]
    fn siblings_do_not_add_up_but_closed_blocks_end() {
        let many = format!("{{{{ f({}) }}}}", vec!["a.b"; 1_000].join(", "));
        assert_eq!(template_depth(&many), 2);
        let sequential = "{% if a %}{{ x }}{% endif %}".repeat(1_000);
        assert_eq!(template_depth(&sequential), 1);
        let set = "{% set x = 1 %}".repeat(1_000);
        assert_eq!(template_depth(&set), 1);
    }

    #[test]
    fn unbalanced_and_unterminated_input_is_measured_without_panicking() {
        for text in [
            "{{",
            "{%",
            "{#",
            "{{ (",
            "{{ ) }}",
            "{{ ')",
            "{% raw %}",
            "{% endif %}",
            "{{-",
            "}}",
            "{",
            "{{ \"\\",
            "{% if %}{% elif %}{% elif %}",
        ] {
            let _ = template_depth(text);
            let _ = expression_depth(text);
        }
        // A closing bracket too many keeps `}}` from closing the tag, as in MiniJinja.
        assert!(template_depth("{{ ) }} not not x") >= 2);
    }

    #[test]
    fn toml_nesting_is_counted_on_matching_brackets_only() {
        let nested = |depth: usize| format!("a = {}1{}\n", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(toml_too_deep(&nested(80), 80), None);
        assert_eq!(toml_too_deep(&nested(81), 80), Some(84..85));
        // Brackets in strings and comments are not brackets.
        assert_eq!(
            toml_too_deep(
                &format!("a = '{}'\n# {}\n", "[".repeat(99), "{".repeat(99)),
                80
            ),
            None
        );
        // Closing brackets of the other kind, or too many of them, close nothing: the file
        // that overflowed `toml`'s parser, whose own count they had driven below zero.
        let drifting = format!(
            "a = [\"x\"{}]\ndeep = {}1{}\n",
            "{{ x }}".repeat(10_000),
            "{ a = ".repeat(50_000),
            " }".repeat(50_000)
        );
        assert!(toml_too_deep(&drifting, 80).is_some());
        assert!(toml_too_deep(&format!("{}{}", "}]".repeat(1_000), nested(81)), 80).is_some());
        assert!(toml_too_deep(&"{ ]".repeat(100), 80).is_some());
    }
}
