//! The limits a runbook file must keep, in one place, and the checks of the file as a whole
//! (its size and its encoding) that run before anything parses it.
//!
//! A runbook file comes from whoever can write to the runbooks directory or talk to the
//! daemon's socket. Every limit here bounds work or stack depth that such a file would
//! otherwise control: validation stays linear in the file, and nothing recursive (the TOML
//! deserializer, MiniJinja's parser and compiler, the walks over `with` values) gets a depth
//! the file chooses. docs/runbook-format.md ("Limits") lists them for authors.

use std::io::Read as _;
use std::path::Path;

use super::Diagnostic;

/// The largest runbook file, in bytes (4 MiB). Larger files are refused before they are
/// parsed.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// The most `[[steps]]` one runbook may have.
pub const MAX_STEPS: usize = 10_000;

/// The longest template, in bytes: a string in a step's `with` table, a target's `url`,
/// `headers` or `auth`, or a connection's `url` that holds template syntax, and every `if`.
/// Strings without template syntax are used verbatim and limited only by the file size.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// How deeply a template or `if` expression may nest (see [`super::nesting`] for what counts).
/// MiniJinja parses, compiles and drops expressions recursively, one stack frame or more per
/// level: a few thousand levels overflow a thread's stack and abort the daemon.
pub const MAX_TEMPLATE_DEPTH: usize = 100;

/// How many arrays and inline tables may nest inside each other, and how many parts one
/// dotted key or table header may have. 80 is the `toml` crate's own limit for both; the
/// loader counts the nesting itself before `toml` parses (see `nesting::toml_too_deep`), and
/// leaves keys to `toml`.
pub const MAX_TOML_DEPTH: usize = 80;

/// The most problems reported for one file. A hostile file can have a problem on every line;
/// past this many the checks stop, and one last diagnostic says that more were left out.
pub const MAX_DIAGNOSTICS: usize = 100;

/// A diagnostic for a source longer than [`MAX_FILE_BYTES`], pointing at the first byte past
/// the limit; `None` when it is within the limit.
pub fn too_large(file: &str, bytes: &[u8]) -> Option<Diagnostic> {
    (bytes.len() > MAX_FILE_BYTES).then(|| {
        Diagnostic::at_byte(
            file,
            bytes,
            MAX_FILE_BYTES,
            format!(
                "the file is too large: a runbook may be at most {MAX_FILE_BYTES} bytes (4 MiB), \
                 and this one goes on past that point"
            ),
        )
    })
}

/// Checks a file's bytes as the loader reads them: within [`MAX_FILE_BYTES`], then UTF-8. A
/// file that is not UTF-8 is reported at the line and column of its first bad byte.
pub fn decode(file: &str, bytes: Vec<u8>) -> Result<String, Vec<Diagnostic>> {
    if let Some(diagnostic) = too_large(file, &bytes) {
        return Err(vec![diagnostic]);
    }
    String::from_utf8(bytes).map_err(|err| {
        let bytes = err.as_bytes();
        let offset = err.utf8_error().valid_up_to();
        let bad = bytes.get(offset).copied().unwrap_or_default();
        vec![Diagnostic::at_byte(
            file,
            bytes,
            offset,
            format!(
                "the file is not UTF-8: byte 0x{bad:02x} here is not part of a UTF-8 character"
            ),
        )]
    })
}

/// Reads a runbook file, but never more than one byte past [`MAX_FILE_BYTES`]: that is enough
/// for [`decode`] to refuse it, and a huge file dropped into the runbooks directory must not
/// be read into the daemon's memory whole.
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_FILE_BYTES + 1).unwrap_or(u64::MAX);
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}
