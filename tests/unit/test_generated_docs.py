"""Documents generated from code stay current: run `make docs` when this fails."""

from __future__ import annotations

import json
from pathlib import Path

from scripts.gen_docs import asyncapi_document, errors_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_error_catalogue_is_current() -> None:
    assert (DOCS / "errors.md").read_text() == errors_markdown(), "run `make docs`"


def test_asyncapi_document_is_current() -> None:
    assert json.loads((DOCS / "asyncapi.json").read_text()) == json.loads(asyncapi_document()), (
        "run `make docs`"
    )


def test_asyncapi_documents_every_command_and_the_events() -> None:
    spec = json.loads(asyncapi_document())
    addresses = {channel["address"] for channel in spec["channels"].values()}
    for subject in (
        "apex.cmd.run.start",
        "apex.cmd.run.cancel",
        "apex.cmd.agent.step",
        "apex.cmd.tool.call",
        "apex.cmd.usage.ingest.{tenant_id}",
        "apex.evt.{tenant_id}.{user_id}.{thread_id}",
        "apex.q.usage.aggregate",
    ):
        assert subject in addresses, subject
    schemas = json.dumps(spec["components"])
    for event_type in ("run.accepted", "agent_thinking", "tool_completed", "run.completed"):
        assert event_type in schemas, event_type


def test_asyncapi_documents_the_bus_api() -> None:
    spec = json.loads(asyncapi_document())
    addresses = {channel["address"] for channel in spec["channels"].values()}
    for operation in ("message.send", "run.cancel", "usage.ingest"):
        assert f"apex.api.{{tenant_id}}.{{user_id}}.{operation}" in addresses, operation
