//! A seeded mutation fuzzer over the bundled runbooks (`runbooks/*.toml`) and the invalid ones
//! (`runbooks/invalid/*.toml`): each case mutates one of them (truncations, swapped and
//! duplicated lines, flipped bytes, invalid UTF-8, NUL, deep nesting, huge strings and
//! numbers) and loads the result as the daemon loads a file from disk. Nothing may panic or
//! overflow the stack, and every rejection must name file:line:column.
//!
//! The seed is fixed so that a failure reproduces; `RUNBOOK_FUZZ_SEED` and
//! `RUNBOOK_FUZZ_CASES` run other or more cases locally; `RUNBOOK_FUZZ_VERBOSE` prints each
//! case before it runs (with `--nocapture`) and `RUNBOOK_FUZZ_DUMP=DIR` writes it to
//! `DIR/CASE.toml`, so that a case that aborts the process can be found (docs/fuzzing.md). The cargo-fuzz
//! target in daemon/fuzz/ is the tool for long runs.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::tests::AnyConfig;
use super::{Diagnostic, load_bytes, parse_stored};

const SEED: u64 = 0x5eed_0011;
const CASES: usize = 400;

/// A file a case starts from: its name (under runbooks/) and its bytes.
type Base = (String, Vec<u8>);

/// The files the mutations start from: the bundled runbooks, which are valid (a mutation of
/// them reaches the later checks and the template parser), and the invalid ones.
fn corpus() -> (Vec<Base>, Vec<Base>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks");
    let read = |dir: &Path, prefix: &str| {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                let name = path.file_name().unwrap().to_string_lossy();
                files.push((format!("{prefix}{name}"), std::fs::read(&path).unwrap()));
            }
        }
        files.sort();
        files
    };
    let bundled = read(&root, "");
    let invalid = read(&root.join("invalid"), "invalid/");
    assert!(
        bundled.len() >= 3 && invalid.len() >= 20,
        "the corpus is where it was"
    );
    (bundled, invalid)
}

/// One way to damage a file.
#[derive(Debug, Clone, Copy)]
enum Mutation {
    Truncate,
    SwapLines,
    DuplicateLine,
    FlipBit,
    InvalidUtf8,
    Nul,
    DeepTemplate,
    DeepToml,
    HugeString,
    HugeNumber,
}

const MUTATIONS: [Mutation; 10] = [
    Mutation::Truncate,
    Mutation::SwapLines,
    Mutation::DuplicateLine,
    Mutation::FlipBit,
    Mutation::InvalidUtf8,
    Mutation::Nul,
    Mutation::DeepTemplate,
    Mutation::DeepToml,
    Mutation::HugeString,
    Mutation::HugeNumber,
];

/// Depths around the limits (just under, just over) and far beyond them.
const DEPTHS: [usize; 5] = [79, 101, 1_000, 5_000, 50_000];

/// Lengths around the template limit and up to past the file limit.
const LENGTHS: [usize; 4] = [1_000, 70_000, 1_000_000, 5_000_000];

const NUMBERS: [&str; 9] = [
    "99999999999999999999999999999",
    "-9223372036854775809",
    "9223372036854775807",
    "1e999999",
    "-1e-999999",
    "nan",
    "-inf",
    "0x7fffffffffffffffff",
    "1_000_000_000_000_000_000_000",
];

/// Byte offsets of the starts of lines.
fn line_starts(bytes: &[u8]) -> Vec<usize> {
    std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .filter(|&start| start <= bytes.len())
        .collect()
}

/// Offsets where `needle` occurs.
fn occurrences(bytes: &[u8], needle: &[u8]) -> Vec<usize> {
    bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, window)| *window == needle)
        .map(|(i, _)| i)
        .collect()
}

fn insert(bytes: &mut Vec<u8>, at: usize, what: &[u8]) {
    let at = at.min(bytes.len());
    bytes.splice(at..at, what.iter().copied());
}

/// A deeply nested template expression of one of the shapes MiniJinja recurses on.
fn deep_expression(rng: &mut fastrand::Rng, depth: usize) -> String {
    match rng.usize(0..6) {
        0 => format!("{}true", "not ".repeat(depth)),
        1 => format!("{}1", "-".repeat(depth)),
        2 => format!("x{}", "|trim".repeat(depth)),
        3 => format!("x{}", " ~ x".repeat(depth)),
        4 => format!("x{}", ".a".repeat(depth)),
        _ => format!("{}x{}", "(".repeat(depth), ")".repeat(depth)),
    }
}

/// Applies `mutation` to `bytes`; returns what it did, for the failure message.
fn mutate(rng: &mut fastrand::Rng, bytes: &mut Vec<u8>, mutation: Mutation) -> String {
    let len = bytes.len();
    match mutation {
        Mutation::Truncate => {
            let at = rng.usize(0..=len);
            bytes.truncate(at);
            format!("truncated at byte {at}")
        }
        Mutation::SwapLines | Mutation::DuplicateLine => {
            let mut lines: Vec<Vec<u8>> = bytes
                .split_inclusive(|&b| b == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            if lines.is_empty() {
                return "nothing to do".into();
            }
            let a = rng.usize(0..lines.len());
            let b = rng.usize(0..lines.len());
            let what = if matches!(mutation, Mutation::SwapLines) {
                lines.swap(a, b);
                format!("swapped lines {} and {}", a + 1, b + 1)
            } else {
                let line = lines[a].clone();
                lines.insert(b, line);
                format!("copied line {} before line {}", a + 1, b + 1)
            };
            *bytes = lines.concat();
            what
        }
        Mutation::FlipBit => {
            if len == 0 {
                return "nothing to do".into();
            }
            let at = rng.usize(0..len);
            let bit = rng.u8(0..8);
            bytes[at] ^= 1 << bit;
            format!("flipped bit {bit} of byte {at}")
        }
        Mutation::InvalidUtf8 => {
            let at = rng.usize(0..=len);
            let bad: &[u8] = match rng.usize(0..4) {
                0 => b"\xff",
                1 => b"\xc3",
                2 => b"\xed\xa0\x80",
                _ => b"\xf4\x90\x80\x80",
            };
            insert(bytes, at, bad);
            format!("inserted {bad:x?} at byte {at}")
        }
        Mutation::Nul => {
            let at = rng.usize(0..=len);
            insert(bytes, at, b"\0");
            format!("inserted NUL at byte {at}")
        }
        Mutation::DeepTemplate => {
            let depth = DEPTHS[rng.usize(0..DEPTHS.len())];
            let expression = deep_expression(rng, depth);
            let ifs = occurrences(bytes, b"if = \"");
            let templates = occurrences(bytes, b"{{");
            match rng.usize(0..3) {
                0 if !ifs.is_empty() => {
                    let at = ifs[rng.usize(0..ifs.len())] + 6;
                    insert(bytes, at, format!("{expression} or ").as_bytes());
                    format!("nested an `if` {depth} deep at byte {at}")
                }
                1 if !templates.is_empty() => {
                    let at = templates[rng.usize(0..templates.len())] + 2;
                    insert(bytes, at, format!(" {expression} ~ ").as_bytes());
                    format!("nested a template {depth} deep at byte {at}")
                }
                _ => {
                    let step = format!(
                        "\n[[steps]]\nid = \"deep\"\nuses = \"shell\"\nif = \"{expression}\"\n\
                         with = {{ command = [\"echo\", \"{{{{ {expression} }}}}\"] }}\n"
                    );
                    bytes.extend_from_slice(step.as_bytes());
                    format!("added a step nested {depth} deep")
                }
            }
        }
        Mutation::DeepToml => {
            let depth = DEPTHS[rng.usize(0..DEPTHS.len())];
            let starts = line_starts(bytes);
            let at = starts[rng.usize(0..starts.len())];
            let line = match rng.usize(0..4) {
                0 => format!("deep = {}1{}\n", "[".repeat(depth), "]".repeat(depth)),
                1 => format!("deep = {}1{}\n", "{ a = ".repeat(depth), " }".repeat(depth)),
                2 => format!("{} = 1\n", vec!["a"; depth].join(".")),
                _ => format!("[{}]\n", vec!["t"; depth].join(".")),
            };
            insert(bytes, at, line.as_bytes());
            format!("inserted TOML nested {depth} deep at byte {at}")
        }
        Mutation::HugeString => {
            let length = LENGTHS[rng.usize(0..LENGTHS.len())];
            let quotes = occurrences(bytes, b"\"");
            let at = if quotes.is_empty() {
                rng.usize(0..=len)
            } else {
                quotes[rng.usize(0..quotes.len())] + 1
            };
            let filler = if rng.bool() { "x" } else { "{{ x }}" };
            insert(bytes, at, filler.repeat(length / filler.len()).as_bytes());
            format!("inserted a {length}-byte string at byte {at}")
        }
        Mutation::HugeNumber => {
            let digits: Vec<usize> = (0..len).filter(|&i| bytes[i].is_ascii_digit()).collect();
            let number = NUMBERS[rng.usize(0..NUMBERS.len())];
            if digits.is_empty() {
                bytes.extend_from_slice(format!("max_parallel = {number}\n").as_bytes());
                return format!("appended max_parallel = {number}");
            }
            let start = digits[rng.usize(0..digits.len())];
            let mut end = start;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            bytes.splice(start..end, number.bytes());
            format!("replaced the number at byte {start} with {number}")
        }
    }
}

/// What is wrong with how a rejection was reported, if anything.
fn misreported(file: &str, diagnostics: &[Diagnostic]) -> Option<String> {
    if diagnostics.is_empty() {
        return Some("rejected without a diagnostic".into());
    }
    diagnostics.iter().find_map(|d| {
        let location = format!("{file}:{}:{}", d.line, d.column);
        (d.line == 0 || d.column == 0 || d.file != file || !d.rendered.contains(&location))
            .then(|| format!("a diagnostic without file:line:column: {}", d.rendered))
    })
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[test]
fn mutated_runbooks_never_panic_and_every_rejection_is_located() {
    let seed = setting("RUNBOOK_FUZZ_SEED", SEED);
    let cases = usize::try_from(setting("RUNBOOK_FUZZ_CASES", CASES as u64)).unwrap();
    let verbose = std::env::var_os("RUNBOOK_FUZZ_VERBOSE").is_some();
    let dump = std::env::var_os("RUNBOOK_FUZZ_DUMP");
    let (bundled, invalid) = corpus();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut failures = Vec::new();
    let mut rejected = 0;
    for case in 0..cases {
        // Every other case starts from a valid runbook.
        let (name, original) = if case % 2 == 0 {
            &bundled[(case / 2) % bundled.len()]
        } else {
            &invalid[(case / 2) % invalid.len()]
        };
        let mut bytes = original.clone();
        let mut done = Vec::new();
        for _ in 0..rng.usize(1..=3) {
            let mutation = MUTATIONS[rng.usize(0..MUTATIONS.len())];
            done.push(mutate(&mut rng, &mut bytes, mutation));
        }
        let file = format!("fuzz/{case}-{}", name.replace('/', "-"));
        let what = format!(
            "case {case} (seed {seed:#x}) from {name}: {}",
            done.join(", ")
        );
        // A stack overflow aborts the process before any report: this says which case it was.
        if verbose {
            eprintln!("{what}");
        }
        if let Some(dir) = &dump {
            std::fs::write(Path::new(dir).join(format!("{case}.toml")), &bytes).unwrap();
        }
        let outcome = std::panic::catch_unwind(|| {
            let loaded = futures::executor::block_on(load_bytes(&file, bytes.clone(), &AnyConfig));
            // A stored version is parsed again on restart, without the checks.
            if let Ok(source) = std::str::from_utf8(&bytes) {
                let _ = parse_stored(&file, source);
            }
            loaded
        });
        match outcome {
            Err(_) => failures.push(format!("{what}: panicked")),
            Ok(Ok(_)) => {}
            Ok(Err(diagnostics)) => {
                rejected += 1;
                if let Some(problem) = misreported(&file, &diagnostics) {
                    failures.push(format!("{what}: {problem}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Most mutations break a file; a fuzzer whose cases all load tests nothing.
    assert!(
        rejected > cases / 2,
        "only {rejected} of {cases} cases were rejected"
    );
}
