//! Whether SQL writes. The daemon decides from it whether a planned statement needs an
//! approval and whether it runs in a read-only transaction (a plugin's own `writes` flag can
//! only add an approval); the database step uses it for its plan. A statement is judged by
//! its first keyword (after comments, whitespace and parentheses); when in doubt it writes.
//!
//! The text is lexed twice, once with the standard rules (PostgreSQL, SQLite: `''` escapes,
//! `$tag$` strings, nested block comments) and once with MySQL's (backslash escapes, `#`
//! comments, `--` only before a space, `/*! .. */` holding live code), and it writes when
//! either reading finds a write: a literal or comment that one dialect closes early cannot
//! hide a statement from the classifier.

/// Whether any statement in `sql` (several may be separated by `;`) writes data or changes
/// the schema.
pub fn writes(sql: &str) -> bool {
    [Dialect::Standard, Dialect::MySql]
        .into_iter()
        .any(|dialect| statements(&lex(sql, dialect)).any(statement_writes))
}

/// The first keyword of the first statement, lower-cased, under the standard rules; `None`
/// when the text holds only comments, whitespace and punctuation.
pub fn first_keyword(sql: &str) -> Option<String> {
    let tokens = lex(sql, Dialect::Standard);
    statements(&tokens).find_map(|statement| match lead(statement) {
        Some(Token::Word(word)) => Some(word.clone()),
        _ => None,
    })
}

/// Keywords that change data inside a `with` (or make a `select` write: `select .. into`
/// creates a table in PostgreSQL and writes a file or variables in MySQL).
const DATA_CHANGING: &[&str] = &["insert", "update", "delete", "merge", "into"];

/// Keywords of a statement that `explain analyze` would really run and that writes.
const EXPLAINED_WRITES: &[&str] = &[
    "insert", "update", "delete", "merge", "into", "create", "alter", "drop", "truncate",
];

/// SQLite pragmas that take an argument and only read.
const READING_PRAGMAS_WITH_ARGUMENT: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_info",
    "index_xinfo",
    "index_list",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

/// SQLite pragmas that act even without an argument.
const ACTING_PRAGMAS: &[&str] = &[
    "optimize",
    "shrink_memory",
    "wal_checkpoint",
    "incremental_vacuum",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Standard,
    MySql,
}

/// What the classifier looks at; literals, quoted identifiers, numbers and comments are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word, lower-cased.
    Word(String),
    /// Any other character outside literals and comments.
    Punct(char),
}

fn statement_writes(tokens: &[Token]) -> bool {
    let Some(first) = lead(tokens) else {
        // Nothing but parentheses: no statement.
        return false;
    };
    let Token::Word(keyword) = first else {
        return true;
    };
    let has = |words: &[&str]| {
        tokens
            .iter()
            .any(|token| matches!(token, Token::Word(word) if words.contains(&word.as_str())))
    };
    match keyword.as_str() {
        "show" | "describe" | "desc" | "table" | "values" => false,
        "select" | "with" => has(DATA_CHANGING),
        "explain" => has(&["analyze", "analyse"]) && has(EXPLAINED_WRITES),
        "pragma" => pragma_writes(tokens),
        _ => true,
    }
}

/// `pragma name`, `pragma schema.name`, `pragma name = value` or `pragma name(value)`: setting
/// a value writes, and so do the pragmas that act; querying one reads.
fn pragma_writes(tokens: &[Token]) -> bool {
    // `pragma main.table_info(t)`: the name is the last word before any `(` or `=`.
    let head: Vec<&Token> = tokens
        .iter()
        .take_while(|token| !matches!(token, Token::Punct('(' | '=')))
        .collect();
    let name = head
        .iter()
        .rev()
        .find_map(|token| match token {
            Token::Word(word) if word != "pragma" => Some(word.as_str()),
            _ => None,
        })
        .unwrap_or("");
    if tokens.contains(&Token::Punct('=')) || ACTING_PRAGMAS.contains(&name) {
        return true;
    }
    // `pragma [schema.]name` alone reads the value; `name(value)` sets it, except for the
    // pragmas whose argument only says what to look at.
    let has_argument = tokens.contains(&Token::Punct('('));
    has_argument && !READING_PRAGMAS_WITH_ARGUMENT.contains(&name)
}

/// The first token that is not an opening parenthesis.
fn lead(tokens: &[Token]) -> Option<&Token> {
    tokens.iter().find(|token| **token != Token::Punct('('))
}

/// The statements of a token list, split at `;`, empty ones left out.
fn statements(tokens: &[Token]) -> impl Iterator<Item = &[Token]> {
    tokens
        .split(|token| *token == Token::Punct(';'))
        .filter(|statement| !statement.is_empty())
}

fn lex(sql: &str, dialect: Dialect) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            _ if c.is_whitespace() => i += 1,
            '-' if next == Some('-') => {
                let mysql_text = dialect == Dialect::MySql
                    && chars.get(i + 2).is_some_and(|after| !after.is_whitespace());
                if mysql_text {
                    // MySQL reads `--1` as minus minus one.
                    tokens.push(Token::Punct('-'));
                    i += 1;
                } else {
                    i = skip_line(&chars, i);
                }
            }
            // No PostgreSQL or SQLite statement starts with `#`, so a MySQL comment there
            // is read as one by both; elsewhere `#` is PostgreSQL's XOR.
            '#' if dialect == Dialect::MySql
                || matches!(tokens.last(), None | Some(Token::Punct(';'))) =>
            {
                i = skip_line(&chars, i)
            }
            '/' if next == Some('*') => {
                let live = dialect == Dialect::MySql && matches!(chars.get(i + 2), Some('!' | '+'));
                if live {
                    // `/*! .. */` runs on MySQL: read on as code.
                    i += 3;
                } else {
                    i = skip_block_comment(&chars, i, dialect == Dialect::Standard);
                }
            }
            '\'' => i = skip_quoted(&chars, i, '\'', dialect == Dialect::MySql),
            '"' => i = skip_quoted(&chars, i, '"', dialect == Dialect::MySql),
            '`' => i = skip_quoted(&chars, i, '`', false),
            '$' if dialect == Dialect::Standard => match dollar_tag(&chars, i) {
                Some(tag) => i = skip_dollar_quoted(&chars, i, &tag),
                None => {
                    tokens.push(Token::Punct('$'));
                    i += 1;
                }
            },
            // MySQL identifiers may hold and even start with `$` (`$$x` is one).
            _ if c.is_alphabetic() || c == '_' || (c == '$' && dialect == Dialect::MySql) => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                tokens.push(Token::Word(word.to_lowercase()));
            }
            _ if c.is_ascii_digit() => {
                // A number, `1e5` and `0x1f` included: no keyword hides in it.
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => {
                tokens.push(Token::Punct(c));
                i += 1;
            }
        }
    }
    tokens
}

/// Past the end of the line starting a comment at `i`.
fn skip_line(chars: &[char], i: usize) -> usize {
    chars[i..]
        .iter()
        .position(|c| *c == '\n')
        .map_or(chars.len(), |at| i + at + 1)
}

/// Past the `*/` closing the comment opened at `i`; PostgreSQL nests them.
fn skip_block_comment(chars: &[char], mut i: usize, nested: bool) -> usize {
    let mut depth = 0;
    while i < chars.len() {
        if chars[i] == '/' && chars.get(i + 1) == Some(&'*') && (nested || depth == 0) {
            depth += 1;
            i += 2;
        } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// Past the closing quote of the literal or quoted identifier opened at `i`: a doubled quote
/// stays inside, and so does a backslash-escaped one in MySQL.
fn skip_quoted(chars: &[char], mut i: usize, quote: char, backslash: bool) -> usize {
    i += 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if backslash => i += 2,
            c if c == quote => {
                if chars.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    i
}

/// The tag of a dollar-quoted string starting at `i` (`$$` or `$name$`); `None` for a `$1`
/// placeholder or a lone `$`.
fn dollar_tag(chars: &[char], i: usize) -> Option<String> {
    let mut j = i + 1;
    if chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    (chars.get(j) == Some(&'$')).then(|| chars[i..=j].iter().collect())
}

/// Past the tag closing the dollar-quoted string opened at `i`.
fn skip_dollar_quoted(chars: &[char], i: usize, tag: &str) -> usize {
    let tag: Vec<char> = tag.chars().collect();
    let mut j = i + tag.len();
    while j < chars.len() {
        if chars[j..].starts_with(&tag) {
            return j + tag.len();
        }
        j += 1;
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn reads(sql: &str) {
        assert!(!writes(sql), "expected a read: {sql}");
    }

    #[track_caller]
    fn write(sql: &str) {
        assert!(writes(sql), "expected a write: {sql}");
    }

    #[test]
    fn plain_reads() {
        reads("select * from orders where id = $1");
        reads("SELECT count(*) AS n FROM orders");
        reads("show tables");
        reads("SHOW search_path");
        reads("explain select * from t");
        reads("EXPLAIN QUERY PLAN SELECT * FROM t");
        reads("values (1, 2), (3, 4)");
        reads("table orders");
        reads("describe orders");
        reads("desc orders");
        reads("select updated_at, deleted, inserted_by from t");
        reads("select * from t where note = 'please delete me'");
    }

    #[test]
    fn plain_writes() {
        for sql in [
            "insert into t (name) values ($1)",
            "update t set name = ? where id = ?",
            "delete from t",
            "merge into t using s on t.id = s.id when matched then delete",
            "create table t (id int)",
            "CREATE INDEX i ON t (id)",
            "alter table t add column x int",
            "drop table t",
            "truncate t",
            "grant select on t to bob",
            "revoke all on t from bob",
            "replace into t values (1)",
            "upsert into t values (1)",
            "call archive_orders()",
            "do $$ begin perform 1; end $$",
            "vacuum",
            "analyze t",
            "set search_path = x",
            "lock table t",
            "copy t from stdin",
            "comment on table t is 'x'",
            "refresh materialized view v",
            "begin",
        ] {
            write(sql);
        }
    }

    #[test]
    fn comments_whitespace_and_parentheses_are_skipped() {
        reads("  -- count them\n  /* all of\n them */ select 1");
        reads("((select 1) union (select 2))");
        reads("/* one */ /* two */ select 1");
        // PostgreSQL nests block comments, MySQL and SQLite do not: for them this goes on
        // after the first `*/`, so it cannot be called a read.
        write("/* outer /* nested */ still outer */ select 1");
        write("-- just a look\ndelete from t");
        write("/* select */ update t set x = 1");
        write("(\n  delete from t returning *\n)");
        reads("# mysql comment\nselect 1");
    }

    #[test]
    fn with_reads_unless_it_changes_data() {
        reads("with recent as (select * from orders) select count(*) from recent");
        reads("WITH RECURSIVE n(x) AS (VALUES (1) UNION SELECT x + 1 FROM n) SELECT * FROM n");
        write("with gone as (delete from orders returning *) select count(*) from gone");
        write("with x as (select 1) insert into t select * from x");
        write("with x as (select 1) UPDATE t SET a = 1");
        write("with s as (select 1) merge into t using s on true when matched then delete");
        // Keywords inside literals or identifiers do not count.
        reads("with x as (select 'insert into t' as q) select q from x");
        reads("with x as (select $$delete from t$$ as q) select q from x");
        reads("with x as (select $body$update t$body$ as q) select q from x");
        reads("with x as (select \"update\" from t) select * from x");
        reads("with x as (select `delete` from t) select * from x");
        reads("with x as (select 'it''s update time' as q) select q from x");
        reads("with x as (select updated_at from t) select * from x");
    }

    #[test]
    fn select_into_writes() {
        write("select * into archive from orders");
        write("select count(*) into @n from orders");
        write("with x as (select 1) select * into t2 from x");
    }

    #[test]
    fn explain_analyze_runs_the_statement() {
        reads("explain analyze select * from t");
        reads("explain delete from t");
        write("explain analyze delete from t");
        write("EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET x = 1");
        write("explain analyse insert into t values (1)");
    }

    #[test]
    fn pragmas_read_unless_they_set_or_act() {
        reads("pragma table_info(orders)");
        reads("PRAGMA main.index_list('orders')");
        reads("pragma foreign_keys");
        reads("pragma journal_mode");
        reads("pragma integrity_check");
        write("pragma foreign_keys = on");
        write("PRAGMA journal_mode=WAL");
        write("pragma journal_mode(wal)");
        write("pragma main.user_version = 5");
        write("pragma optimize");
        write("pragma wal_checkpoint(truncate)");
    }

    #[test]
    fn every_statement_counts() {
        reads("select 1; select 2;");
        write("select 1; delete from t");
        write("select 1;\n-- then\ndrop table t");
        reads("select ';delete from t' as x");
    }

    #[test]
    fn dialect_differences_cannot_hide_a_write() {
        // MySQL reads `\'` as an escaped quote, so the string ends later than in PostgreSQL:
        // the insert is code for one of them.
        write("with x as (select 'a\\') insert into t values (1) -- ' ) select 1");
        // PostgreSQL reads `'a\'` as a whole string: for MySQL it goes on, so a PostgreSQL
        // write after it must still count.
        write("with x as (select 'a\\' as s) insert into t values ('b')");
        // MySQL's `--1` is arithmetic, not a comment.
        write("with x as (select 1--1) insert into t values (1)");
        // MySQL runs the code in `/*! .. */`.
        write("select 1 /*! ; delete from t */");
        // `#` is an operator in PostgreSQL.
        write("with x as (select 5 # 3) insert into t values (1)");
        // SQLite and MySQL do not nest block comments.
        write("/* a /* b */ delete from t /* */ */ select 1");
    }

    #[test]
    fn placeholders_are_not_dollar_strings() {
        reads("select * from t where a = $1 and b = $2");
        write("select $1; delete from t where id = $2");
    }

    #[test]
    fn unknown_or_odd_starts_write_and_empty_text_does_not() {
        write("frobnicate the table");
        write("? select");
        reads("");
        reads("  -- nothing here\n");
        reads(";;");
    }

    #[test]
    fn first_keyword_skips_comments_and_parentheses() {
        assert_eq!(
            first_keyword("-- hi\n/* x */ ((Select 1))").as_deref(),
            Some("select")
        );
        assert_eq!(
            first_keyword("  ; insert into t").as_deref(),
            Some("insert")
        );
        assert_eq!(first_keyword("-- only a comment"), None);
        assert_eq!(first_keyword(""), None);
    }
}
