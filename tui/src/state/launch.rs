//! The launch form of a runbook: one field per param, typed and checked before the run is
//! asked for. The daemon checks again; its refusal shows on the form. The same form confirms
//! an instruction step done, one field per input it asks for.

use std::collections::BTreeMap;

use runbook_protocol::v1::{Approval, ParamSpec, RunbookDetail};

use super::input::LineInput;
use crate::command::RunPart;

/// One param's field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The param as the runbook declares it.
    pub spec: ParamSpec,
    /// What is typed, for a free-text field.
    pub input: LineInput,
    /// The values to choose from (raw text; empty means "leave unset"), for a param with
    /// allowed values or a boolean; empty for a free-text field.
    pub choices: Vec<String>,
    /// The chosen value's index into `choices`.
    pub choice: usize,
    /// Why the value is refused, after a launch attempt.
    pub error: Option<String>,
    /// What the value is for.
    pub role: Role,
}

/// The most steps `from` and `to` offer as choices; beyond, the step id is typed.
const MAX_STEP_CHOICES: usize = 8;

/// What a field's value is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A param of the run (or an input of a confirmed step).
    Value,
    /// `--only`: the steps to run, comma-separated.
    Only,
    /// `--from`: this step and the steps downstream of it.
    From,
    /// `--to`: this step and the steps it needs.
    To,
}

impl Field {
    fn new(spec: ParamSpec) -> Self {
        let default = (!spec.default_json.is_empty()).then(|| raw_value(&spec.default_json));
        let mut choices: Vec<String> = spec.allowed_json.iter().map(|v| raw_value(v)).collect();
        if choices.is_empty() && spec.r#type == "boolean" {
            choices = vec!["true".into(), "false".into()];
        }
        // Optional without a default: "unset" must stay possible.
        if !choices.is_empty() && !spec.required && default.is_none() {
            choices.insert(0, String::new());
        }
        let choice = default
            .as_ref()
            .and_then(|d| choices.iter().position(|c| c == d))
            .unwrap_or(0);
        let input = if choices.is_empty() {
            LineInput::new(default.unwrap_or_default())
        } else {
            LineInput::default()
        };
        Self {
            spec,
            input,
            choices,
            choice,
            error: None,
            role: Role::Value,
        }
    }

    /// A field that selects part of the runbook: `--only` typed, `--from`/`--to` chosen
    /// among `steps` (or none).
    fn part(role: Role, steps: &[String]) -> Self {
        let (name, description) = match role {
            Role::Only => ("only", "run only these steps (ids, comma-separated)"),
            Role::From => ("from", "run this step and the steps downstream of it"),
            _ => ("to", "run up to this step and the steps it needs"),
        };
        let mut field = Self::new(ParamSpec {
            name: name.into(),
            r#type: "string".into(),
            description: description.into(),
            ..Default::default()
        });
        // A few steps are picked from a list; more would not fit on a line, and are typed.
        if role != Role::Only && steps.len() <= MAX_STEP_CHOICES {
            field.choices = std::iter::once(String::new())
                .chain(steps.iter().cloned())
                .collect();
        }
        field.role = role;
        field
    }

    /// Whether the value is picked from a list rather than typed.
    pub fn is_choice(&self) -> bool {
        !self.choices.is_empty()
    }

    /// The raw value to send; empty for none.
    pub fn value(&self) -> &str {
        if self.is_choice() {
            self.choices.get(self.choice).map_or("", String::as_str)
        } else {
            self.input.text()
        }
    }

    /// Moves the choice by `delta`, wrapping around.
    pub fn cycle(&mut self, delta: isize) {
        if self.choices.is_empty() {
            return;
        }
        let len = self.choices.len() as isize;
        self.choice = (self.choice as isize + delta).rem_euclid(len) as usize;
    }

    /// Why the value cannot be sent, if it cannot.
    fn check(&self) -> Option<String> {
        let value = self.value().trim();
        if value.is_empty() {
            let has_default = !self.spec.default_json.is_empty();
            return (self.spec.required && !has_default).then(|| "required".to_owned());
        }
        match self.spec.r#type.as_str() {
            "integer" if value.parse::<i64>().is_err() => Some("expected a whole number".into()),
            "number" if value.parse::<f64>().is_err() => Some("expected a number".into()),
            _ => None,
        }
    }
}

/// The form.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchForm {
    /// The runbook to run.
    pub runbook: String,
    /// The version new runs start with, shown so the operator knows what runs.
    pub version: String,
    /// One field per param, in the runbook's order.
    pub fields: Vec<Field>,
    /// The field with the keyboard.
    pub focus: usize,
    /// Why the daemon refused to start the run, if it did.
    pub error: Option<String>,
    /// The run was asked for and no answer came yet.
    pub starting: bool,
    /// Start a dry run: each step's plan becomes its output; nothing is executed.
    pub dry_run: bool,
    /// What submitting the form does.
    pub purpose: Purpose,
}

/// What the form is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Purpose {
    /// Start a run of the runbook.
    Launch,
    /// Confirm an instruction step of a run done, with the values it asks for.
    Confirm {
        /// The run.
        run_id: String,
        /// The instruction step.
        step_id: String,
        /// Its text, Markdown.
        text: String,
    },
}

impl LaunchForm {
    /// The form for `detail`'s params, with their defaults filled in.
    pub fn new(detail: &RunbookDetail) -> Self {
        let summary = detail.summary.clone().unwrap_or_default();
        Self {
            runbook: summary.name,
            version: summary.version,
            fields: detail
                .params
                .iter()
                .cloned()
                .map(Field::new)
                .chain(part_fields(detail))
                .collect(),
            focus: 0,
            error: None,
            starting: false,
            dry_run: false,
            purpose: Purpose::Launch,
        }
    }

    /// The form that confirms instruction step `step_id` of a run of `runbook` done: one field
    /// per input its approval asks for, defaults filled in, and its text.
    pub fn confirming(runbook: &str, run_id: &str, step_id: &str, approval: &Approval) -> Self {
        let text = crate::state::approvals::plan(approval)
            .into_iter()
            .flat_map(|plan| plan.effects)
            .filter_map(|effect| match effect {
                crate::state::approvals::Effect::Note(text) => Some(text),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n");
        Self {
            runbook: runbook.to_owned(),
            version: String::new(),
            fields: approval.inputs.iter().cloned().map(Field::new).collect(),
            focus: 0,
            error: None,
            starting: false,
            dry_run: false,
            purpose: Purpose::Confirm {
                run_id: run_id.to_owned(),
                step_id: step_id.to_owned(),
                text,
            },
        }
    }

    /// The field with the keyboard, if the runbook has params.
    pub fn focused(&mut self) -> Option<&mut Field> {
        self.fields.get_mut(self.focus)
    }

    /// The part of the runbook the selection fields ask for.
    pub fn part(&self) -> RunPart {
        let value = |role: Role| {
            self.fields
                .iter()
                .find(|field| field.role == role)
                .map(|field| field.value().trim().to_owned())
                .unwrap_or_default()
        };
        RunPart {
            only: value(Role::Only)
                .split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect(),
            from: value(Role::From),
            to: value(Role::To),
        }
    }

    /// Checks every field, marking those in error; the values (params or inputs) to send
    /// when all pass.
    pub fn submit(&mut self) -> Option<BTreeMap<String, String>> {
        let mut ok = true;
        for field in &mut self.fields {
            field.error = field.check();
            ok &= field.error.is_none();
        }
        if !ok {
            // The first field in error gets the keyboard, so it can be fixed at once.
            self.focus = self
                .fields
                .iter()
                .position(|f| f.error.is_some())
                .unwrap_or(self.focus);
            return None;
        }
        Some(
            self.fields
                .iter()
                .filter(|f| f.role == Role::Value && !f.value().trim().is_empty())
                .map(|f| (f.spec.name.clone(), f.value().trim().to_owned()))
                .collect(),
        )
    }
}

/// The fields that run part of a runbook, for one of more than one step.
fn part_fields(detail: &RunbookDetail) -> Vec<Field> {
    let steps: Vec<String> = detail.steps.iter().map(|step| step.id.clone()).collect();
    if steps.len() < 2 {
        return Vec::new();
    }
    [Role::Only, Role::From, Role::To]
        .into_iter()
        .map(|role| Field::part(role, &steps))
        .collect()
}

/// The text a user would type for a JSON value: strings without their quotes.
pub fn raw_value(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(value) => value.to_string(),
        Err(_) => json.to_owned(),
    }
}

/// The params of a past run (a JSON object of typed values) as raw texts, to start it again.
pub fn params_of(params_json: &str) -> BTreeMap<String, String> {
    match serde_json::from_str::<serde_json::Value>(params_json) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .map(|(name, value)| {
                let raw = match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                };
                (name, raw)
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runbook_protocol::v1::RunbookSummary;

    fn spec(name: &str, ty: &str, required: bool, default: &str, allowed: &[&str]) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            r#type: ty.into(),
            required,
            default_json: default.into(),
            allowed_json: allowed.iter().map(|a| (*a).to_owned()).collect(),
            description: String::new(),
        }
    }

    fn form(params: Vec<ParamSpec>) -> LaunchForm {
        LaunchForm::new(&RunbookDetail {
            summary: Some(RunbookSummary {
                name: "deploy".into(),
                ..Default::default()
            }),
            params,
            ..Default::default()
        })
    }

    #[test]
    fn part_of_the_runbook_is_chosen_among_its_steps_and_left_out_of_the_params() {
        let step = |id: &str| runbook_protocol::v1::StepSpec {
            id: id.into(),
            ..Default::default()
        };
        let mut form = LaunchForm::new(&RunbookDetail {
            params: vec![spec("env", "string", false, "", &[])],
            steps: vec![step("build"), step("test"), step("ship")],
            ..Default::default()
        });
        let roles: Vec<Role> = form.fields.iter().map(|f| f.role).collect();
        assert_eq!(roles, [Role::Value, Role::Only, Role::From, Role::To]);
        assert_eq!(form.part(), RunPart::default(), "all of it by default");
        assert_eq!(form.fields[2].choices, ["", "build", "test", "ship"]);
        form.fields[1].input.set(" build , test,");
        form.fields[3].cycle(2);
        assert_eq!(
            form.part(),
            RunPart {
                only: vec!["build".into(), "test".into()],
                from: String::new(),
                to: "test".into(),
            }
        );
        assert_eq!(form.submit(), Some(BTreeMap::new()), "no param is a step");

        let single = LaunchForm::new(&RunbookDetail {
            steps: vec![step("only")],
            ..Default::default()
        });
        assert!(single.fields.is_empty(), "one step: nothing to choose");
    }

    #[test]
    fn defaults_and_choices_are_filled_in() {
        let form = form(vec![
            spec(
                "env",
                "string",
                false,
                "\"staging\"",
                &["\"staging\"", "\"prod\""],
            ),
            spec("count", "integer", false, "3", &[]),
            spec("dry", "boolean", false, "", &[]),
        ]);
        assert_eq!(form.fields[0].value(), "staging");
        assert_eq!(form.fields[0].choices, ["staging", "prod"]);
        assert_eq!(form.fields[1].value(), "3");
        assert_eq!(form.fields[2].choices, ["", "true", "false"]);
        assert_eq!(form.fields[2].value(), "");
    }

    #[test]
    fn submit_checks_types_and_required_values() {
        let mut form = form(vec![
            spec("name", "string", false, "", &[]),
            spec("count", "integer", true, "", &[]),
        ]);
        assert_eq!(form.submit(), None);
        assert_eq!(form.fields[1].error.as_deref(), Some("required"));
        assert_eq!(form.focus, 1);
        form.fields[1].input.set("x");
        assert_eq!(form.submit(), None);
        assert_eq!(
            form.fields[1].error.as_deref(),
            Some("expected a whole number")
        );
        form.fields[1].input.set("4");
        let params = form.submit().expect("valid");
        assert_eq!(params.len(), 1, "an empty optional value is left out");
        assert_eq!(params["count"], "4");
    }

    #[test]
    fn a_past_runs_params_become_raw_texts() {
        let params = params_of(r#"{"env":"prod","count":3,"dry":false}"#);
        assert_eq!(params["env"], "prod");
        assert_eq!(params["count"], "3");
        assert_eq!(params["dry"], "false");
        assert!(params_of("").is_empty());
    }
}
