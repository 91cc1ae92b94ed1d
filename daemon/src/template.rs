//! Templates and conditions (MiniJinja): rendering a step's `with` table and `if`, and listing
//! the variables a template reads so that a runbook is checked before it ever runs.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior, Value};

/// The one environment all templates use: strict, so that a typo is an error instead of an
/// empty string spliced into a command.
fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Values end up in argv, env and JSON, never in HTML.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env
    })
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
    let template = environment()
        .template_from_str(text)
        .map_err(|err| describe(&err))?;
    Ok(template.undeclared_variables(true).into_iter().collect())
}

/// The dotted variable paths an `if` expression reads.
pub fn expression_variables(expr: &str) -> Result<BTreeSet<String>, String> {
    let expression = environment()
        .compile_expression(expr)
        .map_err(|err| describe(&err))?;
    Ok(expression.undeclared_variables(true).into_iter().collect())
}

/// Renders one template string against `context`.
pub fn render(text: &str, context: &Value) -> Result<String, String> {
    environment()
        .render_str(text, context)
        .map_err(|err| describe(&err))
}

/// Renders every template string inside a JSON value, leaving other values as they are.
/// Each string is rendered on its own: a value never becomes part of another argument.
pub fn render_json(
    value: &serde_json::Value,
    context: &Value,
) -> Result<serde_json::Value, String> {
    Ok(match value {
        serde_json::Value::String(text) if is_template(text) => {
            serde_json::Value::String(render(text, context)?)
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|item| render_json(item, context))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(key, item)| Ok((key.clone(), render_json(item, context)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Evaluates an `if` condition to a boolean (Jinja truthiness).
pub fn evaluate(expr: &str, context: &Value) -> Result<bool, String> {
    let expression = environment()
        .compile_expression(expr)
        .map_err(|err| describe(&err))?;
    let value = expression.eval(context).map_err(|err| describe(&err))?;
    Ok(value.is_true())
}

/// MiniJinja's message without its internal template name (`<string>`), which means nothing
/// to an author.
fn describe(err: &minijinja::Error) -> String {
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
    fn renders_each_string_alone() {
        let ctx = context(&serde_json::json!({ "params": { "x": "a b; rm -rf /" } }));
        let rendered =
            render_json(&serde_json::json!(["echo", "{{ params.x }}"]), &ctx).expect("renders");
        assert_eq!(rendered, serde_json::json!(["echo", "a b; rm -rf /"]));
    }
}
