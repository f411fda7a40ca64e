"""Generates the documents that are derived from code: docs/errors.md (the error
catalogue), docs/asyncapi.json (the bus, from the services' FastStream routers) and the
table of deterministic ids in docs/architecture.md (from ``apex_contracts.dedupe_ids``,
between its ``ids:begin``/``ids:end`` markers). ``make docs`` writes them;
tests/unit/test_generated_docs.py and tests/unit/contracts/test_dedupe_ids.py fail when
they are stale."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

from apex_contracts import dedupe_ids
from apex_contracts.errors import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]


def errors_markdown() -> str:
    lines = [
        "# Error catalogue",
        "",
        "Generated from `libs/contracts/src/apex_contracts/errors.py` by `make docs`; do not edit.",
        "",
        "Every error Apex reports has a stable `code`, a `message` a person understands and a",
        '`retryable` flag. Over HTTP it is `{"error": {"code", "message", "retryable"}}` with the',
        "status below; over the WebSocket it is an `error` frame; in a run it is the `error` of",
        "`run.failed`, `agent_failed` or a failed `tool_completed`.",
        "",
        "| code | HTTP | retryable | message | arises in |",
        "|---|---|---|---|---|",
    ]
    for code, spec in CATALOGUE.items():
        lines.append(
            f"| `{code.value}` | {spec.status} | {'yes' if spec.retryable else 'no'} | {spec.message} | {spec.arises} |"
        )
    return "\n".join(lines) + "\n"


IDS_BEGIN = "<!-- ids:begin (generated from apex_contracts.dedupe_ids by `make docs`) -->"
IDS_END = "<!-- ids:end -->"


def dedupe_ids_table() -> str:
    """The table of deterministic ids: each function's output for ``<parameter>``
    placeholders, unless its rule spells the pattern out."""
    lines = [IDS_BEGIN, "| message | id | `apex_contracts.dedupe_ids` |", "|---|---|---|"]
    for rule in dedupe_ids.RULES:
        pattern = rule.pattern
        if pattern is None:
            names = inspect.signature(rule.function).parameters
            pattern = f"`{rule.function(**{name: f'<{name}>' for name in names})}`"
        note = f" ({rule.note})" if rule.note else ""
        lines.append(f"| {rule.messages} | {pattern}{note} | `{rule.function.__name__}` |")
    return "\n".join([*lines, IDS_END])


def with_dedupe_ids_table(document: str) -> str:
    span = re.compile(re.escape(IDS_BEGIN.split(" (", maxsplit=1)[0]) + r".*?" + re.escape(IDS_END), re.S)
    if not span.search(document):
        raise ValueError("docs/architecture.md has no ids:begin/ids:end markers")
    return span.sub(lambda _match: dedupe_ids_table(), document)


def asyncapi_document() -> str:
    from scripts.bus_spec import build_spec

    return json.dumps(build_spec(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    (ROOT / "docs" / "errors.md").write_text(errors_markdown())
    (ROOT / "docs" / "asyncapi.json").write_text(asyncapi_document())
    architecture = ROOT / "docs" / "architecture.md"
    architecture.write_text(with_dedupe_ids_table(architecture.read_text()))
    print("wrote docs/errors.md, docs/asyncapi.json and the id table of docs/architecture.md")


if __name__ == "__main__":
    main()
