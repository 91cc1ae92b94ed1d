//! TOML syntax highlighting for the editor: a small line lexer, enough to colour what a runbook
//! holds (tables, keys, strings with their `{{ templates }}`, numbers, booleans, comments). It
//! never fails: text it does not understand stays plain.

use std::ops::Range;

/// What a piece of a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// Anything else: spaces, unknown words.
    Plain,
    /// `# ...` to the end of the line.
    Comment,
    /// A `[table]` or `[[array.of.tables]]` header.
    Table,
    /// A key before `=`.
    Key,
    /// A string, quotes included.
    String,
    /// A `{{ ... }}` template inside a string.
    Template,
    /// A number, date or time.
    Number,
    /// `true` or `false`.
    Bool,
    /// `=`, `,`, brackets and braces.
    Punct,
}

/// Where the previous line left the lexer: inside a multi-line string or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Carry {
    #[default]
    None,
    /// Inside `"""`.
    Basic,
    /// Inside `'''`.
    Literal,
}

/// The pieces of lines `rows` of `lines`, each a character range and its token. The lexer
/// starts at the first line, since a multi-line string may open above the visible rows.
pub fn highlight(lines: &[String], rows: Range<usize>) -> Vec<Vec<(Range<usize>, Token)>> {
    let mut carry = Carry::None;
    let mut out = Vec::with_capacity(rows.len());
    for (row, line) in lines.iter().enumerate().take(rows.end) {
        let chars: Vec<char> = line.chars().collect();
        let (pieces, next) = line_tokens(&chars, carry);
        carry = next;
        if row >= rows.start {
            out.push(pieces);
        }
    }
    out
}

fn line_tokens(chars: &[char], carry: Carry) -> (Vec<(Range<usize>, Token)>, Carry) {
    let mut pieces = Vec::new();
    let mut i = 0;
    match carry {
        Carry::None => {}
        Carry::Basic | Carry::Literal => {
            let quote = if carry == Carry::Basic { '"' } else { '\'' };
            match find_triple(chars, 0, quote) {
                Some(end) => {
                    push_string(&mut pieces, chars, 0..end + 3);
                    i = end + 3;
                }
                None => {
                    push_string(&mut pieces, chars, 0..chars.len());
                    return (pieces, carry);
                }
            }
        }
    }
    let first_text = chars.iter().position(|c| !c.is_whitespace());
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            pieces.push((start..i, Token::Plain));
        } else if c == '#' {
            pieces.push((i..chars.len(), Token::Comment));
            i = chars.len();
        } else if c == '[' && Some(i) == first_text && carry == Carry::None {
            // A header: up to its closing bracket(s); a comment may follow.
            let end = chars[i..]
                .iter()
                .rposition(|c| *c == ']')
                .map_or(chars.len(), |at| i + at + 1);
            pieces.push((i..end, Token::Table));
            i = end;
        } else if c == '"' || c == '\'' {
            if chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c) {
                match find_triple(chars, i + 3, c) {
                    Some(end) => {
                        push_string(&mut pieces, chars, i..end + 3);
                        i = end + 3;
                    }
                    None => {
                        push_string(&mut pieces, chars, i..chars.len());
                        let carry = if c == '"' {
                            Carry::Basic
                        } else {
                            Carry::Literal
                        };
                        return (pieces, carry);
                    }
                }
            } else {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    // Escapes only exist in basic strings.
                    if c == '"' && chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(chars.len());
                push_string(&mut pieces, chars, start..i);
            }
        } else if "=,{}[]".contains(c) {
            i += 1;
            pieces.push((start..i, Token::Punct));
        } else {
            while i < chars.len() && !chars[i].is_whitespace() && !"=,{}[]#\"'".contains(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let token = if is_key(chars, i) {
                Token::Key
            } else if word == "true" || word == "false" {
                Token::Bool
            } else if word.starts_with(|c: char| c.is_ascii_digit())
                || ((word.starts_with('-') || word.starts_with('+'))
                    && word[1..].starts_with(|c: char| c.is_ascii_digit()))
                || matches!(word.as_str(), "inf" | "nan" | "+inf" | "-inf")
            {
                Token::Number
            } else {
                Token::Plain
            };
            pieces.push((start..i, token));
        }
    }
    (pieces, Carry::None)
}

/// Whether the word ending at `end` is a key: followed by `=` (and not by `==`, which only
/// appears inside conditions).
fn is_key(chars: &[char], end: usize) -> bool {
    let mut i = end;
    while i < chars.len() && chars[i] == ' ' {
        i += 1;
    }
    chars.get(i) == Some(&'=') && chars.get(i + 1) != Some(&'=')
}

fn find_triple(chars: &[char], from: usize, quote: char) -> Option<usize> {
    (from..chars.len().saturating_sub(2))
        .find(|&i| chars[i] == quote && chars[i + 1] == quote && chars[i + 2] == quote)
}

/// A string piece, split so that each `{{ ... }}` inside it is its own template piece.
fn push_string(pieces: &mut Vec<(Range<usize>, Token)>, chars: &[char], range: Range<usize>) {
    let mut i = range.start;
    let mut plain_from = range.start;
    while i + 1 < range.end {
        if chars[i] == '{' && chars[i + 1] == '{' {
            let close = (i + 2..range.end.saturating_sub(1))
                .find(|&j| chars[j] == '}' && chars[j + 1] == '}');
            let end = close.map_or(range.end, |j| j + 2);
            if plain_from < i {
                pieces.push((plain_from..i, Token::String));
            }
            pieces.push((i..end, Token::Template));
            i = end;
            plain_from = end;
        } else {
            i += 1;
        }
    }
    if plain_from < range.end {
        pieces.push((plain_from..range.end, Token::String));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each piece of one line as (text, token), whitespace left out.
    fn pieces(text: &str) -> Vec<(String, Token)> {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let chars: Vec<char> = lines[lines.len() - 1].chars().collect();
        highlight(&lines, lines.len() - 1..lines.len())
            .remove(0)
            .into_iter()
            .map(|(range, token)| (chars[range].iter().collect::<String>(), token))
            .filter(|(text, _)| !text.trim().is_empty())
            .collect()
    }

    fn p(text: &str, token: Token) -> (String, Token) {
        (text.to_owned(), token)
    }

    #[test]
    fn keys_strings_templates_and_comments() {
        assert_eq!(
            pieces(r#"url = "{{ targets.api.url }}/health" # check"#),
            vec![
                p("url", Token::Key),
                p("=", Token::Punct),
                p("\"", Token::String),
                p("{{ targets.api.url }}", Token::Template),
                p("/health\"", Token::String),
                p("# check", Token::Comment),
            ]
        );
    }

    #[test]
    fn headers_numbers_and_booleans() {
        assert_eq!(pieces("[[steps]]"), vec![p("[[steps]]", Token::Table)]);
        assert_eq!(
            pieces("retry = { attempts = 3, jitter = true }"),
            vec![
                p("retry", Token::Key),
                p("=", Token::Punct),
                p("{", Token::Punct),
                p("attempts", Token::Key),
                p("=", Token::Punct),
                p("3", Token::Number),
                p(",", Token::Punct),
                p("jitter", Token::Key),
                p("=", Token::Punct),
                p("true", Token::Bool),
                p("}", Token::Punct),
            ]
        );
    }

    #[test]
    fn multi_line_strings_carry_over_lines() {
        let text = "script = \"\"\"\necho hi # not a comment\n\"\"\"\nx = 1";
        assert_eq!(
            pieces(&text.lines().take(2).collect::<Vec<_>>().join("\n")),
            vec![p("echo hi # not a comment", Token::String)]
        );
        assert_eq!(
            pieces(text),
            vec![
                p("x", Token::Key),
                p("=", Token::Punct),
                p("1", Token::Number)
            ]
        );
    }

    #[test]
    fn escaped_quotes_stay_inside_the_string() {
        assert_eq!(
            pieces(r#"a = "say \"hi\"" "#),
            vec![
                p("a", Token::Key),
                p("=", Token::Punct),
                p(r#""say \"hi\"""#, Token::String)
            ]
        );
    }
}
