"""A user who sends a message while their earlier run is still going (double-texting),
under each policy: the decision is an event in the thread, and every run still ends
exactly once."""

from __future__ import annotations

from apex_runtime import Bus
from tests.integration.orchestrator.harness import (
    GatewayStandIn,
    Machinery,
    Sent,
    UsageStandIn,
    User,
    assert_clean,
    run_events,
    thread_log,
    wait_for_type,
    wait_terminal,
)


async def _busy_user(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn, policy: str
) -> tuple[User, Sent]:
    """One user whose first run is in the middle of a (held) tool call; one run allowed."""
    await machinery.start("tools")
    await machinery.start("agents")
    await machinery.start("orchestrator", max_runs_per_user=1, double_texting=policy)
    user = User()
    usage.hold()
    first = await gateway.send(user)
    await wait_for_type(bus, first, "tool_executing")
    return user, first


async def test_enqueue_runs_the_second_message_after_the_first(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    user, first = await _busy_user(machinery, bus, usage, gateway, "enqueue")
    second = await gateway.send(user, "and what about latency?", thread_id=first.scope.thread_id)
    queued = await wait_for_type(bus, second, "run.queued")
    assert queued["data"] == {
        "behind": [first.run_id],
        "policy": "enqueue",
        "reason": "concurrency",
        "waiting_for": [],
    }

    usage.release()
    assert (await wait_terminal(bus, first))["type"] == "run.completed"
    assert (await wait_terminal(bus, second))["type"] == "run.completed"
    log = await thread_log(bus, first)
    seq_of = {event["id"]: seq for seq, event in log}
    assert seq_of[f"{second.run_id}:accepted"] > seq_of[f"{first.run_id}:terminal"], "one run at a time"
    for sent in (first, second):
        assert_clean(await run_events(bus, sent))


async def test_enqueue_serves_the_queue_in_order_across_threads(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    user, first = await _busy_user(machinery, bus, usage, gateway, "enqueue")
    later = [await gateway.send(user, f"question {n}") for n in range(3)]  # each in its own thread
    for sent in later:
        await wait_for_type(bus, sent, "run.queued")
    usage.release()
    accepted_at = []
    for sent in [first, *later]:
        assert (await wait_terminal(bus, sent))["type"] == "run.completed"
        accepted = await wait_for_type(bus, sent, "run.accepted")
        accepted_at.append(accepted["occurred_at"])
    assert accepted_at == sorted(accepted_at), "admitted in the order they were sent"


async def test_reject_fails_the_second_message_visibly(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    user, first = await _busy_user(machinery, bus, usage, gateway, "reject")
    second = await gateway.send(user, "hello again?", thread_id=first.scope.thread_id)
    end = await wait_terminal(bus, second)
    assert end["type"] == "run.failed"
    assert end["data"]["error"]["code"] == "concurrency_limit" and end["data"]["error"]["retryable"] is True
    assert [e["type"] for e in await run_events(bus, second)] == ["message.created", "run.failed"]

    usage.release()
    assert (await wait_terminal(bus, first))["type"] == "run.completed"
    third = await gateway.send(user, "now?", thread_id=first.scope.thread_id)
    assert (await wait_terminal(bus, third))["type"] == "run.completed", "the slot was given back"


async def test_interrupt_cancels_the_running_one_and_starts_the_new_one(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    user, first = await _busy_user(machinery, bus, usage, gateway, "interrupt")
    second = await gateway.send(user, "actually, just latency please", thread_id=first.scope.thread_id)

    end = await wait_terminal(bus, first)
    assert end["type"] == "run.cancelled" and end["data"]["cause"] == "interrupted"
    request = await wait_for_type(bus, first, "run.cancel_requested")
    assert request["data"] == {"cause": "interrupted", "requested_by": second.run_id}
    queued = await wait_for_type(bus, second, "run.queued")
    assert queued["data"] == {
        "behind": [first.run_id],
        "policy": "interrupt",
        "reason": "concurrency",
        "waiting_for": [],
    }

    usage.release()
    assert (await wait_terminal(bus, second))["type"] == "run.completed"
    for sent in (first, second):
        assert_clean(await run_events(bus, sent))
