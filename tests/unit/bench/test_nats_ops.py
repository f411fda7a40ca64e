"""NATS operations are told apart by what they are for, and charged per run less what the
platform does while idle."""

from __future__ import annotations

import pytest

from bench.instrument.sitecustomize import received_kind, sent_kind
from bench.natsops import grouped, per_run


@pytest.mark.parametrize(
    ("subject", "reply", "payload", "kind"),
    [
        ("$JS.ACK.APEX_EVT.persistence-redis.1.2.3.4.5", "", b"", "ack"),
        ("$JS.ACK.APEX_CMD.agents-step.1.2.3.4.5", "", b"+WPI", "ack_in_progress"),
        ("$JS.ACK.APEX_CMD.agents-step.1.2.3.4.5", "", b'-NAK {"delay": 1}', "nak"),
        ("$JS.ACK.APEX_CMD.agents-step.1.2.3.4.5", "", b"+TERM", "term"),
        ("$JS.API.DIRECT.GET.APEX_EVT", "_INBOX.x.1", b"{}", "direct_get"),
        ("$JS.API.DIRECT.GET.KV_apex_runs.$KV.apex_runs.run_1", "_INBOX.x.2", b"", "kv_get"),
        ("$JS.API.CONSUMER.MSG.NEXT.APEX_EVT.persistence-redis", "_INBOX.x.3", b"{}", "pull_request"),
        ("$JS.API.STREAM.MSG.GET.KV_apex_runs", "_INBOX.x.4", b"{}", "msg_get"),
        ("$JS.API.CONSUMER.INFO.APEX_EVT.x", "_INBOX.x.5", b"", "js_api_consumer"),
        ("$KV.apex_runs.run_1", "_INBOX.x.6", b"{}", "kv_write"),
        ("apex.evt.ten_1.usr_1.thr_1", "_INBOX.x.7", b"{}", "event_publish_js"),
        ("apex.evt.ten_1.usr_1.thr_1", "", b"{}", "event_publish"),
        ("apex.cmd.agent.step", "_INBOX.x.8", b"{}", "command_publish_js"),
        ("apex.q.thread_events", "_INBOX.x.9", b"{}", "query_publish"),
        ("apex.health.gateway.vm-1", "", b"{}", "heartbeat_publish"),
        ("_INBOX.y.1", "", b"{}", "reply"),
        ("elsewhere", "", b"", "other"),
    ],
)
def test_what_a_client_sends_is_named_by_its_purpose(
    subject: str, reply: str, payload: bytes, kind: str
) -> None:
    assert sent_kind(subject, reply, payload) == kind


def test_what_a_client_receives_is_named_by_its_origin() -> None:
    assert (
        received_kind("apex.evt.t.u.r", "$JS.ACK.APEX_EVT.persistence-redis.1.1.1.1.1") == "delivery_apex_evt"
    )
    assert received_kind("$KV.apex_runs.k", "$JS.ACK.KV_apex_runs.watch.1.1.1.1.1") == "delivery_kv"
    assert received_kind("_INBOX.abc.1", "") == "reply"
    assert received_kind("apex.evt.t.u.r", "") == "event_received"


def test_counters_are_charged_per_run_less_their_idle_rate() -> None:
    before = {"sent/persistence/pull_request": 100, "sent/agents/ack": 10, "server/in_msgs": 1000}
    after = {"sent/persistence/pull_request": 150, "sent/agents/ack": 30, "server/in_msgs": 1400}
    # while idle, persistence pulls 2 a second and nothing else moves
    idle = ({"sent/persistence/pull_request": 0}, {"sent/persistence/pull_request": 20}, 10.0)
    figures = per_run(before, after, runs=10, wall_s=5.0, idle=idle)
    assert figures == {"sent/persistence/pull_request": 4.0, "sent/agents/ack": 2.0, "server/in_msgs": 40.0}
    shown = grouped(figures)
    assert shown["sent_total"] == 6.0
    assert shown["sent_by_kind"] == {"pull_request": 4.0, "ack": 2.0}
    assert shown["sent_by_service"] == {"persistence": 4.0, "agents": 2.0}
    assert shown["server"]["in_msgs"] == 40.0
