//! Templates and conditions (MiniJinja): rendering a step's `with` table and `if`, and listing
//! the variables a template reads so that a runbook is checked before it ever runs.
//!
//! Every render has a budget of fuel (MiniJinja's own accounting of instructions executed and
//! bytes created), so a hostile template (`{% for a in 'x' * 100000 %}...`) fails its step
//! within milliseconds instead of spinning a worker thread. How deeply a template nests is
//! checked by the loader before MiniJinja parses it (`runbook::nesting`), and the engine stops
//! at 500 levels of recursion while rendering.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

/// Fuel one render may use unless the daemon config sets `[limits] template_fuel`: about a
/// million instructions, or 64 MB of data created, whichever comes first. A template that
/// fills in a few values uses a few dozen.
pub const DEFAULT_FUEL: u64 = 1_000_000;

/// The environment all templates use, rebuilt when the daemon sets its fuel.
static ENVIRONMENT: RwLock<Option<(u64, Arc<Environment<'static>>)>> = RwLock::new(None);

/// Sets the fuel of every later render in this process (the daemon does this once at start
/// from its config).
pub fn set_fuel(fuel: u64) {
    let mut current = ENVIRONMENT
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if current.as_ref().is_none_or(|(set, _)| *set != fuel) {
        *current = Some((fuel, Arc::new(build(fuel))));
    }
}

/// The one environment: strict, so that a typo is an error instead of an empty string spliced
/// into a command, and fuelled.
fn environment() -> Arc<Environment<'static>> {
    if let Some((_, env)) = &*ENVIRONMENT
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Arc::clone(env);
    }
    set_fuel(DEFAULT_FUEL);
    environment()
}

fn build(fuel: u64) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Values end up in argv, env and JSON, never in HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_fuel(Some(fuel));
    env
}

/// The fuel renders have now.
fn fuel() -> u64 {
    ENVIRONMENT
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .map_or(DEFAULT_FUEL, |(fuel, _)| *fuel)
}

/// A JSON context as a template value.
pub fn context(json: &serde_json::Value) -> Value {
    Value::from(minijinja::value::Serde(json))
}

/// Whether a string contains template syntax at all (most do not; they are used verbatim).
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// The dotted variable paths a template reads, for example `params.env` or
/// `steps.build.output.stdout`.
pub fn template_variables(text: &str) -> Result<BTreeSet<String>, String> {
    let env = environment();
    let template = env.template_from_str(text).map_err(|err| describe(&err))?;
    Ok(template.undeclared_variables(true).into_iter().collect())
}

/// The dotted variable paths an `if` expression reads.
pub fn expression_variables(expr: &str) -> Result<BTreeSet<String>, String> {
    let env = environment();
    let expression = env.compile_expression(expr).map_err(|err| describe(&err))?;
    Ok(expression.undeclared_variables(true).into_iter().collect())
}

/// Renders one template string against `context`.
pub fn render(text: &str, context: &Value) -> Result<String, String> {
    environment()
        .render_str(text, context)
        .map_err(|err| describe(&err))
}

/// Renders every template string inside a JSON value, leaving other values as they are.
/// Each string is rendered on its own: a value never becomes part of another argument. An
/// error names the string's place in `value` (`command[2]`, `headers.X-Trace`).
pub fn render_json(
    value: &serde_json::Value,
    context: &Value,
) -> Result<serde_json::Value, String> {
    render_json_at(value, context, &mut String::new())
}

fn render_json_at(
    value: &serde_json::Value,
    context: &Value,
    path: &mut String,
) -> Result<serde_json::Value, String> {
    Ok(match value {
        serde_json::Value::String(text) if is_template(text) => {
            serde_json::Value::String(render(text, context).map_err(|err| {
                if path.is_empty() {
                    err
                } else {
                    format!("{path}: {err}")
                }
            })?)
        }
        serde_json::Value::Array(items) => {
            let mut rendered = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                rendered.push(render_json_at(item, context, path)?);
                path.truncate(len);
            }
            serde_json::Value::Array(rendered)
        }
        serde_json::Value::Object(map) => {
            let mut rendered = serde_json::Map::with_capacity(map.len());
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                rendered.insert(key.clone(), render_json_at(item, context, path)?);
                path.truncate(len);
            }
            serde_json::Value::Object(rendered)
        }
        other => other.clone(),
    })
}

/// Evaluates an `if` condition to a boolean (Jinja truthiness).
pub fn evaluate(expr: &str, context: &Value) -> Result<bool, String> {
    let env = environment();
    let expression = env.compile_expression(expr).map_err(|err| describe(&err))?;
    let value = expression.eval(context).map_err(|err| describe(&err))?;
    Ok(value.is_true())
}

/// Evaluates an expression (a loop's `for_each`) to the JSON value it yields; undefined
/// is an error, so that a misspelt field is not a loop over nothing.
pub fn evaluate_value(expr: &str, context: &Value) -> Result<serde_json::Value, String> {
    let env = environment();
    let expression = env.compile_expression(expr).map_err(|err| describe(&err))?;
    let value = expression.eval(context).map_err(|err| describe(&err))?;
    if value.is_undefined() {
        return Err(format!("`{expr}` is undefined"));
    }
    serde_json::to_value(&value).map_err(|err| format!("`{expr}`: {err}"))
}

/// MiniJinja's message without its internal template name (`<string>`), which means nothing
/// to an author.
fn describe(err: &minijinja::Error) -> String {
    if err.kind() == ErrorKind::OutOfFuel {
        return format!(
            "the template used up its budget of {} fuel (instructions and bytes it creates); \
             it does too much work for one value (the daemon's `[limits] template_fuel`)",
            fuel()
        );
    }
    let mut message = err.detail().map_or_else(
        || err.kind().to_string(),
        |detail| format!("{}: {detail}", err.kind()),
    );
    if let Some(source) = std::error::Error::source(err) {
        message.push_str(&format!(" ({source})"));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_nested_variables() {
        let vars = template_variables("{{ params.env }}-{{ steps.build.output.stdout | trim }}")
            .expect("valid template");
        assert!(vars.contains("params.env"));
        assert!(vars.contains("steps.build.output.stdout"));
    }

    #[test]
    fn strict_undefined_is_an_error() {
        let ctx = context(&serde_json::json!({ "params": {} }));
        assert!(render("{{ params.missing }}", &ctx).is_err());
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel_and_names_its_place() {
        let ctx = context(&serde_json::json!({ "params": {} }));
        let nested =
            "{% for a in 'x' * 100000 %}{% for b in 'x' * 100000 %}{{ a }}{% endfor %}{% endfor %}";
        let err = render_json(&serde_json::json!({ "command": ["echo", nested] }), &ctx)
            .expect_err("runs out of fuel");
        assert!(err.starts_with("command[1]: "), "{err}");
        assert!(err.contains("used up its budget"), "{err}");
        let huge = render("{{ 'x' * 1000000000 }}", &ctx).expect_err("too much data");
        assert!(huge.contains("used up its budget"), "{huge}");
        assert_eq!(render("{{ 'ok' }}", &ctx).as_deref(), Ok("ok"));
    }

    #[test]
    fn renders_each_string_alone() {
        let ctx = context(&serde_json::json!({ "params": { "x": "a b; rm -rf /" } }));
        let rendered =
            render_json(&serde_json::json!(["echo", "{{ params.x }}"]), &ctx).expect("renders");
        assert_eq!(rendered, serde_json::json!(["echo", "a b; rm -rf /"]));
    }
}
