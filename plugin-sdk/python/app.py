"""A `word-count` step plugin in Python: counts the words of `text` and logs the result.

Built with componentize-py against the `events-step-plugin` world of plugin-sdk/wit (it
imports only `runbook:plugin/events`, so it needs no grant):

    componentize-py -d ../wit -w events-step-plugin componentize app -o word_count.wasm
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import events, types

SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "The text to count."}},
    "required": ["text"],
    "additionalProperties": False,
}


def parse(config: str) -> dict:
    """The step's `with` table, or the config errors that `validate` reports."""
    try:
        table = json.loads(config)
    except ValueError as err:
        raise Err([types.ConfigError(path="", message=f"not JSON: {err}", position=None)])
    problems = []
    if not isinstance(table, dict):
        problems.append(types.ConfigError(path="", message="must be a table", position=None))
        table = {}
    elif not isinstance(table.get("text"), str):
        problems.append(types.ConfigError(path="text", message="a string is required", position=None))
    for key in table:
        if key != "text":
            problems.append(types.ConfigError(path=key, message=f"unknown field `{key}`", position=None))
    if problems:
        raise Err(problems)
    return table


def step_error(message: str) -> Err:
    return Err(types.StepError(message=message, output=None, transient=False, retry_after_ms=None))


class Step(exports.Step):
    def describe(self) -> types.Descriptor:
        return types.Descriptor(
            kind="word-count",
            version="0.1.0",
            description="Counts the words of a text.",
            config_schema=json.dumps(SCHEMA),
            capabilities=["events"],
            idempotent=True,
            needs_approval=False,
        )

    def validate(self, config: str) -> None:
        parse(config)

    def plan(self, ctx: types.StepContext, config: str) -> types.StepPlan:
        try:
            text = parse(config)["text"]
        except Err as err:
            raise step_error(err.value[0].message)
        return types.StepPlan(summary=f"count the words of {len(text)} characters", effects=[])

    def execute(self, ctx: types.StepContext, config: str, inputs: str) -> types.Outcome:
        try:
            text = parse(config)["text"]
        except Err as err:
            raise step_error(err.value[0].message)
        words = len(text.split())
        events.log(events.Level.INFO, f"{words} words")
        return types.Outcome_Done(json.dumps({"words": words}))

    def resume(self, ctx: types.StepContext, config: str, token: str) -> types.Outcome:
        raise step_error("word-count never waits, so there is nothing to resume")
