"""Generates the documents that are derived from code: docs/errors.md (the error
catalogue) and docs/asyncapi.json (the bus, from the services' FastStream routers).
``make docs`` writes them; tests/unit/test_generated_docs.py fails when they are stale."""

from __future__ import annotations

import json
from pathlib import Path

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


def asyncapi_document() -> str:
    from scripts.bus_spec import build_spec

    return json.dumps(build_spec(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    (ROOT / "docs" / "errors.md").write_text(errors_markdown())
    (ROOT / "docs" / "asyncapi.json").write_text(asyncapi_document())
    print("wrote docs/errors.md and docs/asyncapi.json")


if __name__ == "__main__":
    main()
