//! The launch form: each param with its type and description, allowed values as choices, and
//! why a value is refused. Confirming an instruction step shows its text above the same form.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Paragraph, Wrap};
use runbook_protocol::v1::RunStatus;

use super::text_block;
use crate::state::launch::{Field, Purpose, Role};
use crate::state::{LaunchForm, State};
use crate::{format, theme};

/// Draws `form` into `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State, form: &LaunchForm) {
    let (title, area) = match &form.purpose {
        Purpose::Launch => (
            format!(
                " Run {} · version {} ",
                form.runbook,
                format::short_hash(&form.version)
            ),
            area,
        ),
        Purpose::Confirm {
            run_id,
            step_id,
            text,
        } => {
            // The instruction above, the values it asks for below.
            let fields = u16::try_from(form.fields.len() * 2 + 5).unwrap_or(u16::MAX);
            let [top, bottom] =
                Layout::vertical([Constraint::Fill(1), Constraint::Length(fields)]).areas(area);
            frame.render_widget(
                Paragraph::new(Text::from(super::markdown::render(text)))
                    .wrap(Wrap { trim: false })
                    .block(text_block(
                        format!(" {} / {step_id} · by hand ", form.runbook),
                        false,
                    )),
                top,
            );
            (
                format!(" Confirm {step_id} of run {} ", super::bars::short(run_id)),
                bottom,
            )
        }
    };
    let confirming = form.purpose != Purpose::Launch;
    let block = text_block(title, true);
    let inner = block.inner(area);
    let label_width = form
        .fields
        .iter()
        .map(|f| f.spec.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, 20);
    let mut text = Text::default();
    let mut cursor = None;
    if !confirming && !form.fields.iter().any(|f| f.role == Role::Value) {
        text.push_line(Line::styled("This runbook has no params.", theme::dim()));
    }
    for (i, field) in form.fields.iter().enumerate() {
        let focused = i == form.focus;
        if field.role == Role::Only {
            text.push_line(Line::default());
            text.push_line(Line::styled(
                "Part of the runbook (all of it when left empty):",
                theme::dim(),
            ));
        }
        let marker = if focused { "› " } else { "  " };
        let mut spans = vec![
            Span::raw(marker),
            Span::styled(
                format!("{:<label_width$} ", field.spec.name),
                if focused {
                    theme::header()
                } else {
                    ratatui::style::Style::new()
                },
            ),
        ];
        if field.is_choice() {
            spans.extend(choices(field, focused));
        } else {
            let value = field.input.text().to_owned();
            if focused {
                let before: String = field
                    .input
                    .text()
                    .chars()
                    .take(field.input.cursor())
                    .collect();
                let x = 2 + label_width + 1 + Span::raw(before).width();
                cursor = Some((x, text.lines.len()));
            }
            spans.push(Span::styled(
                if value.is_empty() && !focused {
                    "(none)".to_owned()
                } else {
                    value
                },
                if focused {
                    theme::selected()
                } else {
                    theme::dim()
                },
            ));
        }
        text.push_line(Line::from(spans));
        let indent = " ".repeat(2 + label_width + 1);
        match &field.error {
            Some(error) => text.push_line(Line::styled(format!("{indent}{error}"), theme::error())),
            None => text.push_line(Line::styled(
                format!("{indent}{}", describe(field)),
                theme::dim(),
            )),
        }
    }
    text.push_line(Line::default());
    if !confirming {
        text.push_line(if form.dry_run {
            Line::styled(
                "Dry run: on (Ctrl-D): each step's plan is recorded as its output; nothing runs.",
                theme::run_status(RunStatus::Waiting),
            )
        } else {
            Line::styled("Dry run: off (Ctrl-D)", theme::dim())
        });
    }
    let (busy, hint) = if confirming {
        (
            "Confirming …",
            "Enter confirms it done with these values; Esc goes back.",
        )
    } else {
        (
            "Starting the run …",
            "Enter starts the run and opens its view; Esc goes back.",
        )
    };
    text.push_line(if form.starting {
        Line::styled(busy, theme::dim())
    } else if let Some(error) = &form.error {
        Line::styled(format!("The daemon refused: {error}"), theme::error())
    } else {
        Line::styled(hint, theme::dim())
    });
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: false }).block(block),
        area,
    );
    if let Some((x, y)) = cursor
        && state.help.is_none()
    {
        let x = inner.x + u16::try_from(x).unwrap_or(u16::MAX);
        let y = inner.y + u16::try_from(y).unwrap_or(u16::MAX);
        if x < inner.right() && y < inner.bottom() {
            frame.set_cursor_position(Position::new(x, y));
        }
    }
}

/// The choices of a choice field, the chosen one highlighted.
fn choices(field: &Field, focused: bool) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    for (i, choice) in field.choices.iter().enumerate() {
        let label = if choice.is_empty() {
            "(none)".to_owned()
        } else {
            choice.clone()
        };
        let style = match (i == field.choice, focused) {
            (true, true) => theme::selected(),
            (true, false) => theme::header(),
            (false, _) => theme::dim(),
        };
        spans.push(Span::styled(format!(" {label} "), style));
    }
    if focused {
        spans.push(Span::styled("  ←/→", theme::dim()));
    }
    spans
}

/// `string, required · default "staging" · what it is for`.
fn describe(field: &Field) -> String {
    let spec = &field.spec;
    if field.role != Role::Value {
        return spec.description.clone();
    }
    let mut parts = vec![if spec.required {
        format!("{}, required", spec.r#type)
    } else {
        spec.r#type.clone()
    }];
    if !spec.default_json.is_empty() {
        parts.push(format!("default {}", spec.default_json));
    }
    if !spec.description.is_empty() {
        parts.push(spec.description.clone());
    }
    parts.join(" · ")
}
