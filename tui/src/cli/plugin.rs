//! `plugin new KIND`: writes a standalone crate for a new step kind from the template kept in
//! `plugin-sdk/template`, ready to build for wasm32-wasip2 and to `cargo test` (its step's
//! tests, and its built component's in runbookd's host). Needs no daemon.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::error::{EXIT_OK, Failure};

const CARGO_TOML: &str = include_str!("../../../plugin-sdk/template/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../../../plugin-sdk/template/lib.rs.tmpl");
const README: &str = include_str!("../../../plugin-sdk/template/README.md.tmpl");
const COMPONENT_TEST: &str = include_str!("../../../plugin-sdk/template/component.rs.tmpl");

/// The longest step kind name.
const MAX_KIND_LEN: usize = 64;

/// Where the new crate finds the SDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// A checkout of runbook's `plugin-sdk` directory.
    Path(PathBuf),
    /// runbook's git repository, at a revision if given.
    Git { url: String, rev: Option<String> },
}

impl SdkSource {
    /// The SDK dependency as written in the new crate's Cargo.toml.
    fn dependency(&self) -> String {
        self.source_of(None)
    }

    /// The test harness (`runbook-plugin-test`, beside the SDK) as a dependency.
    fn harness_dependency(&self) -> String {
        self.source_of(Some("test"))
    }

    /// This source, or the directory `below` the SDK for a path (a git source holds every
    /// crate of the repository, so cargo finds either by name).
    fn source_of(&self, below: Option<&str>) -> String {
        match self {
            Self::Path(path) => {
                let path = below.map_or_else(|| path.clone(), |below| path.join(below));
                format!("{{ path = {} }}", toml_string(&path.display().to_string()))
            }
            Self::Git { url, rev: None } => format!("{{ git = {} }}", toml_string(url)),
            Self::Git {
                url,
                rev: Some(rev),
            } => format!(
                "{{ git = {}, rev = {} }}",
                toml_string(url),
                toml_string(rev)
            ),
        }
    }
}

/// `plugin new KIND [--dir D] (--sdk-path P | --sdk-git URL [--sdk-rev R])`.
pub fn new(
    out: &mut dyn Write,
    kind: &str,
    dir: Option<PathBuf>,
    sdk: SdkSource,
) -> anyhow::Result<u8> {
    check_kind(kind)?;
    let sdk = match sdk {
        // Relative to where the command runs, not to the new crate.
        SdkSource::Path(path) => {
            let path = std::path::absolute(&path)
                .with_context(|| format!("cannot resolve {}", path.display()))?;
            if !path.join("Cargo.toml").is_file() {
                return Err(Failure::Input(format!(
                    "--sdk-path {}: no Cargo.toml there; point it at the plugin-sdk directory of a runbook checkout",
                    path.display()
                ))
                .into());
            }
            SdkSource::Path(path)
        }
        git => git,
    };
    let crate_name = format!("runbook-plugin-{}", kind.replace('_', "-"));
    let dir = dir.unwrap_or_else(|| PathBuf::from(&crate_name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(Failure::Input(format!(
            "{} exists and is not empty; choose another --dir",
            dir.display()
        ))
        .into());
    }
    let fill = |template: &str| {
        template
            .replace("__CRATE__", &crate_name)
            .replace("__LIB__", &crate_name.replace('-', "_"))
            .replace("__KIND__", kind)
            .replace("__TYPE__", &type_name(kind))
            .replace("__SDK__", &sdk.dependency())
            .replace("__HARNESS__", &sdk.harness_dependency())
    };
    write(&dir.join("Cargo.toml"), &fill(CARGO_TOML))?;
    write(&dir.join("src").join("lib.rs"), &fill(LIB_RS))?;
    write(&dir.join("README.md"), &fill(README))?;
    write(
        &dir.join("tests").join("component.rs"),
        &fill(COMPONENT_TEST),
    )?;
    writeln!(
        out,
        "wrote {} (step kind `{kind}`): cd {0} && cargo build --release --target wasm32-wasip2 && cargo test",
        dir.display()
    )?;
    Ok(EXIT_OK)
}

/// A step kind is what runbooks write in `uses`: lowercase letters, digits, `-` and `_`,
/// starting with a letter.
fn check_kind(kind: &str) -> Result<(), Failure> {
    let mut chars = kind.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && kind.len() <= MAX_KIND_LEN;
    if valid {
        Ok(())
    } else {
        Err(Failure::Input(format!(
            "`{kind}` is not a step kind name: lowercase letters, digits, `-` and `_`, starting with a letter, at most {MAX_KIND_LEN} characters"
        )))
    }
}

/// `disk-check` -> `DiskCheck`: the Rust type of the step.
fn type_name(kind: &str) -> String {
    kind.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// A TOML basic string: quotes and backslashes escaped, control characters as `\uXXXX`.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_become_type_names_and_bad_kinds_are_refused() {
        assert_eq!(type_name("disk-check"), "DiskCheck");
        assert_eq!(type_name("ping"), "Ping");
        assert_eq!(type_name("a_b-c9"), "ABC9");
        for bad in ["", "Ping", "9lives", "has space", "dot.ted"] {
            assert!(check_kind(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_sdk_dependency_is_valid_toml_for_any_path() {
        let odd = SdkSource::Path(PathBuf::from(r#"/tmp/a "quoted" \ dir"#));
        let table: toml::Table =
            toml::from_str(&format!("dep = {}", odd.dependency())).expect("valid TOML");
        assert_eq!(
            table["dep"]["path"].as_str(),
            Some(r#"/tmp/a "quoted" \ dir"#)
        );
        let git = SdkSource::Git {
            url: "https://example.com/runbook.git".into(),
            rev: Some("abc123".into()),
        };
        let table: toml::Table =
            toml::from_str(&format!("dep = {}", git.dependency())).expect("valid TOML");
        assert_eq!(table["dep"]["rev"].as_str(), Some("abc123"));
    }
}
