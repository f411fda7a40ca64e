"""The ids of messages that a retry must reproduce: the one place they are built.

A message's envelope ``id`` is its ``Nats-Msg-Id``: a publisher that crashes and
publishes the same fact again uses the same id, and the stream keeps the first copy. So
wherever a retry could publish a fact twice, its id is a function of what the fact is
about (the run, the step, the call...), never of the moment or the process. The ids of
things that a retry must reproduce (a run, a thread, a tool call) are *derived* ULIDs
(``derive_id``): the same parts always give the same id.

``RULES`` lists every function with the messages it names; ``scripts/gen_docs.py``
renders it as the table of deterministic ids in docs/architecture.md (a function whose
pattern is not a plain format names it in ``pattern``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, ParamSpec

from apex_contracts.ids import derive_id

P = ParamSpec("P")

AgentOutcome = Literal["agent_started", "agent_completed", "agent_failed"]
ToolFact = Literal["tool.call", "tool_executing", "tool_completed"]


@dataclass(frozen=True)
class IdRule:
    """One row of the table: the messages an id function names, and how."""

    messages: str
    function: Callable[..., str]
    pattern: str | None = None  # None: the function's output for ``<parameter>`` placeholders
    note: str = ""


RULES: list[IdRule] = []


def _rule(
    messages: str, *, pattern: str | None = None, note: str = ""
) -> Callable[[Callable[P, str]], Callable[P, str]]:
    def register(fn: Callable[P, str]) -> Callable[P, str]:
        RULES.append(IdRule(messages, fn, pattern, note))
        return fn

    return register


# --- a user's message and its run -------------------------------------------------------


@_rule("`message.created`")
def message_created_id(run_id: str) -> str:
    return f"{run_id}:message"


@_rule("`run.start`")
def run_start_id(run_id: str) -> str:
    return f"{run_id}:start"


@_rule("`run.cancel`")
def run_cancel_id(run_id: str) -> str:
    return f"{run_id}:cancel"


@_rule("`run.accepted`")
def run_accepted_id(run_id: str) -> str:
    return f"{run_id}:accepted"


@_rule("`run.queued` (double-texting, by the orchestrator)")
def run_queued_id(run_id: str) -> str:
    return f"{run_id}:queued"


@_rule("`run.queued` (`waiting_for_service`, by the gateway)")
def run_waiting_for_service_id(run_id: str) -> str:
    return f"{run_id}:queued:service"


@_rule("`run.cancel_requested`")
def run_cancel_requested_id(run_id: str) -> str:
    return f"{run_id}:cancel_requested"


@_rule("`run.completed` / `run.failed` / `run.cancelled`", note="one id for all three")
def terminal_id(run_id: str) -> str:
    """One id for every terminal event of a run: the stream keeps only the first."""
    return f"{run_id}:terminal"


# --- agent steps --------------------------------------------------------------------------


@_rule("`agent.step`")
def agent_step_id(run_id: str, step: int) -> str:
    return f"{run_id}:{step}:agent.step"


@_rule("`agent_started` / `agent_completed` / `agent_failed`")
def agent_event_id(run_id: str, step: int, type: AgentOutcome) -> str:
    return f"{run_id}:{step}:{type}"


@_rule("`agent_thinking`", note="the step's n-th thought")
def agent_thinking_id(run_id: str, step: int, n: int) -> str:
    return f"{run_id}:{step}:thinking:{n}"


@_rule("`message.delta`", note="each attempt of a step streams its own messages")
def message_delta_id(run_id: str, step: int, attempt: int, message: int, index: int) -> str:
    return f"{run_id}:{step}:a{attempt}:delta:{message}:{index}"


@_rule("`message.superseded`")
def message_superseded_id(run_id: str, step: int, attempt: int) -> str:
    return f"{run_id}:{step}:superseded:{attempt}"


@_rule("`tool.call` / `tool_executing` / `tool_completed`")
def tool_event_id(run_id: str, call_id: str, type: ToolFact) -> str:
    return f"{run_id}:{call_id}:{type}"


# --- threads and users --------------------------------------------------------------------


@_rule("`thread.renamed`", note="`rename` is a fresh `evt_` id: every rename is a new fact")
def thread_renamed_id(thread_id: str, rename: str) -> str:
    return f"{thread_id}:renamed:{rename}"


@_rule("`thread.deleted` (hidden)")
def thread_hidden_id(thread_id: str) -> str:
    return f"{thread_id}:deleted:hide"


@_rule("`thread.deleted` (erased)", note="`head`: the thread's last seq when erased")
def thread_erased_id(thread_id: str, head: int) -> str:
    return f"{thread_id}:erase:{head}"


@_rule("`user.erased`", pattern="`<user_id>:erased`, `<user_id>:erased:closed` when the account closes")
def user_erased_id(user_id: str, *, account_closed: bool = False) -> str:
    return f"{user_id}:erased:closed" if account_closed else f"{user_id}:erased"


# --- usage, dead letters, audit -----------------------------------------------------------


@_rule("`usage.ingest`", note="part `part` of upload batch `batch_id`")
def usage_ingest_id(batch_id: str, part: int) -> str:
    return f"{batch_id}:{part}"


@_rule("a dead letter on `apex.dlq.<command>`", note="one per stored command")
def dead_letter_id(stream: str, seq: int) -> str:
    return f"dlq:{stream}:{seq}"


@_rule("audit `data.erased` (by persistence)", note="at most 100 characters")
def erasure_audit_id(event_id: str) -> str:
    return f"erasure:{event_id}"[:100]


# --- derived ids of things ----------------------------------------------------------------


@_rule("`run_id` of a user's message", pattern="`run_` derived from (tenant, user, client_msg_id)")
def run_id_for(tenant_id: str, user_id: str, client_msg_id: str) -> str:
    return derive_id("run", tenant_id, user_id, client_msg_id)


@_rule("`thread_id` of a new thread", pattern="`thr_` derived from (tenant, user, client_msg_id)")
def thread_id_for(tenant_id: str, user_id: str, client_msg_id: str) -> str:
    return derive_id("thr", tenant_id, user_id, client_msg_id)


@_rule("`message_id` of a user's message", pattern="`msg_` derived from (tenant, user, client_msg_id)")
def message_id_for(tenant_id: str, user_id: str, client_msg_id: str) -> str:
    return derive_id("msg", tenant_id, user_id, client_msg_id)


@_rule("`call_id` of a tool call", pattern="`call_` derived from (run, step, n)")
def call_id_for(run_id: str, step: int, n: int) -> str:
    return derive_id("call", run_id, str(step), str(n))


@_rule("`message_id` of a streamed reply", pattern="`msg_` derived from (run, step, attempt, message)")
def reply_message_id(run_id: str, step: int, attempt: int, message: int) -> str:
    """The id of streamed message ``message`` of ``attempt`` of ``step``."""
    return derive_id("msg", run_id, str(step), "reply", str(attempt), str(message))


@_rule("`message_id` of a run's answer (read views)", pattern="`msg_` derived from (run)")
def answer_message_id(run_id: str) -> str:
    return derive_id("msg", run_id, "assistant")
