//! Runbook files: parsing TOML into a typed, checked [`Runbook`], with diagnostics that carry
//! file:line:column. Nothing here runs anything.

mod check;
mod diagnostic;
#[cfg(test)]
mod fuzz;
mod graph;
pub mod limits;
mod locate;
mod nesting;
mod parse;
pub mod retry;
pub mod target;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use check::{ConfigProblem, StepKinds};
pub use diagnostic::{Diagnostic, render_all};
pub use retry::RetryPolicy;
pub use target::{BreakerPolicy, RateLimit, Target};

/// A parsed runbook that passed every check: only these are stored and run.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub name: String,
    pub description: String,
    /// The file it came from, as given to the parser.
    pub path: String,
    pub source: String,
    /// Content hash of `source` (hex SHA-256): the version runs pin.
    pub version: String,
    pub params: Vec<Param>,
    /// In file order. Set once by the parser, which indexes them: changing them afterwards
    /// would leave [`Runbook::step`] and [`Runbook::dependents`] answering for the old steps.
    pub steps: Vec<Step>,
    pub targets: Vec<Target>,
    pub connections: Vec<Connection>,
    /// How many steps of one run may execute at once.
    pub max_parallel: usize,
    /// Built with `steps`; private so that no runbook exists without it.
    graph: graph::StepGraph,
}

impl Runbook {
    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.step_index(id).and_then(|index| self.steps.get(index))
    }

    /// The index in `steps` of the step with this id (the first one, should a file that
    /// failed its checks repeat an id).
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.graph.index(id)
    }

    /// Indices of the steps whose `needs` name step `index`, ascending and without repeats:
    /// the steps that may become ready when it ends. Empty for an index out of range.
    pub fn dependents(&self, index: usize) -> &[usize] {
        self.graph.dependents(index)
    }

    /// The connection with this name.
    pub fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections
            .iter()
            .find(|connection| connection.name == name)
    }

    /// The target with this name.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|target| target.name == name)
    }
}

/// A `[connections.NAME]` table: a database connection of this runbook's steps.
#[derive(Debug, Clone)]
pub struct Connection {
    pub name: String,
    /// May hold templates (a secret, typically).
    pub url: String,
}

/// A typed input of a runbook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Param {
    pub name: String,
    pub kind: ParamType,
    pub default: Option<serde_json::Value>,
    pub required: bool,
    /// Empty when any value of the type is allowed.
    pub allowed: Vec<serde_json::Value>,
    pub description: String,
}

/// The type of a param.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    /// A list of values: what a loop step's `for_each` can read as it is.
    List,
}

impl ParamType {
    /// The name used in runbook files.
    pub fn label(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::List => "list",
        }
    }

    /// "a string", "an integer", ... for messages.
    pub fn with_article(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Integer => "an integer",
            Self::Number => "a number",
            Self::Boolean => "a boolean",
            Self::List => "a list",
        }
    }

    /// Whether a JSON value has this type.
    pub fn accepts(self, value: &serde_json::Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Integer => value.is_i64() || value.is_u64(),
            Self::Number => value.is_number(),
            Self::Boolean => value.is_boolean(),
            Self::List => value.is_array(),
        }
    }

    /// Converts text typed by a user (`-p key=value`) into a value of this type.
    pub fn parse_text(self, text: &str) -> Result<serde_json::Value, String> {
        let invalid = || format!("`{text}` is not {}", self.with_article());
        Ok(match self {
            Self::String => serde_json::Value::String(text.to_owned()),
            Self::Integer => {
                serde_json::Value::from(text.trim().parse::<i64>().map_err(|_| invalid())?)
            }
            Self::Number => {
                let number: f64 = text.trim().parse().map_err(|_| invalid())?;
                serde_json::Number::from_f64(number)
                    .map(serde_json::Value::Number)
                    .ok_or_else(invalid)?
            }
            Self::Boolean => match text.trim() {
                "true" | "yes" | "1" => serde_json::Value::Bool(true),
                "false" | "no" | "0" => serde_json::Value::Bool(false),
                _ => return Err(invalid()),
            },
            // `a, b,c` is three strings; `[...]` is JSON, for items of other types.
            Self::List => match text.trim() {
                json if json.starts_with('[') => match serde_json::from_str(json) {
                    Ok(list @ serde_json::Value::Array(_)) => list,
                    _ => return Err(format!("`{text}` is not a JSON list")),
                },
                "" => serde_json::Value::Array(Vec::new()),
                items => serde_json::Value::Array(
                    items
                        .split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(|item| serde_json::Value::String(item.to_owned()))
                        .collect(),
                ),
            },
        })
    }
}

/// One step of a runbook.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: String,
    /// The plugin kind that runs it.
    pub uses: String,
    /// The `with` table as JSON; strings may hold templates.
    pub with: serde_json::Value,
    pub needs: Vec<String>,
    /// The `if` expression.
    pub condition: Option<String>,
    /// The target its `with.target` names.
    pub target: Option<String>,
    pub timeout: Option<Duration>,
    /// When to try again after a failed attempt; `None` tries once.
    pub retry: Option<RetryPolicy>,
    /// `Some(true)` asks for an approval even where the daemon's policy does not.
    pub approval: Option<bool>,
    /// Whether the step's requests may follow a redirect from https to http.
    pub allow_insecure_redirects: bool,
    /// `wait = { queue = "STREAM" }`: an async step waits for its completion message on this
    /// JetStream stream (the daemon's `[cluster] completions_stream`) instead of polling.
    pub wait_queue: Option<String>,
    /// `runs_on`: the labels an agent must all carry to run the step; empty, the daemon
    /// runs it itself.
    pub runs_on: Vec<String>,
    pub description: String,
    /// What an operator types when confirming an `instruction` step (none for other kinds);
    /// typed and checked like params, they become the step's output.
    pub inputs: Vec<Param>,
    /// Set when the step runs once per item of a list (`for_each`).
    pub each: Option<Loop>,
    /// Ids of the steps of this runbook that its `with` templates (at any depth), its `if` and
    /// its `for_each` read as `steps.<id>`, sorted and without repeats. The engine gives the
    /// step's templates and its plugin's `inputs` only these steps' outputs and statuses. A
    /// template that reads
    /// `steps` as a whole (`steps[name]`, a loop over `steps`) names no id and adds nothing.
    pub reads: Vec<String>,
}

/// How a loop step (`for_each`) runs its instances.
#[derive(Debug, Clone, PartialEq)]
pub struct Loop {
    pub items: LoopItems,
    /// Instances that run at once (the step's `max_parallel`; 1 unless it sets one).
    pub max_parallel: usize,
    /// Whether the first failed instance cancels the others instead of letting them finish.
    pub fail_fast: bool,
    /// How deeply the loop nests: 1, or one more than the deepest loop whose output its
    /// `for_each` reads (its items are that loop's instances' outputs). Set with `reads`.
    pub depth: usize,
}

/// Where a loop's items come from.
#[derive(Debug, Clone, PartialEq)]
pub enum LoopItems {
    /// The expression inside `for_each = "{{ ... }}"`, evaluated when the step starts.
    Expression(String),
    /// A list written in the runbook, used as it is.
    List(Vec<serde_json::Value>),
}

/// The built-in step kind an operator carries out by hand and confirms.
pub const INSTRUCTION_KIND: &str = "instruction";

/// Hex SHA-256 of a runbook's source: its version.
pub fn content_hash(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

/// Checks a file's bytes as read from disk (its size, then that it is UTF-8, reported at
/// its first bad byte), then parses and checks it as [`load`] does.
pub async fn load_bytes(
    file: &str,
    bytes: Vec<u8>,
    kinds: &impl StepKinds,
) -> Result<Runbook, Vec<Diagnostic>> {
    let source = limits::decode(file, bytes)?;
    load(file, &source, kinds).await
}

/// Parses and checks a runbook file. `file` is how diagnostics name it; its stem is the
/// runbook's name unless the file sets `name`. A file beyond the [`limits`] is refused with a
/// diagnostic before the part of it that would cost too much is read.
pub async fn load(
    file: &str,
    source: &str,
    kinds: &impl StepKinds,
) -> Result<Runbook, Vec<Diagnostic>> {
    let runbook = parse::parse(file, source)?;
    check::check(runbook, kinds).await
}

/// Parses a stored version again (it passed every check when it was stored) without asking
/// the plugins, which may have changed since.
pub fn parse_stored(file: &str, source: &str) -> Result<Runbook, Vec<Diagnostic>> {
    parse::parse(file, source).map(|parsed| parsed.runbook)
}
