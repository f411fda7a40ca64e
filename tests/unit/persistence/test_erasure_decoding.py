"""Erasure tombstones as projections decode them: what they cover, forged ones erase
nothing, and a user's erasure subject is read as such (not as a broken thread event)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from apex_contracts import ThreadDeleted, ThreadDeletedData, new_id
from apex_contracts.events import UserErased, UserErasedData
from apex_contracts.subjects import thread_events
from apex_persistence.projection.delivery import Delivery, decode
from apex_persistence.projection.erasure import per_target
from apex_persistence.settings import PersistenceSettings, Retention


def user_erased(tenant: str, user: str) -> UserErased:
    return UserErased(
        id=f"{user}:erased", tenant_id=tenant, user_id=user, data=UserErasedData(requested_by=user)
    )


def test_a_user_erasure_covers_every_thread_of_that_user_only(story) -> None:
    s = story.scope()
    tombstone = user_erased(s.tenant_id, s.user_id)
    batch = [
        *story.deliveries(story.run_events(s)),
        Delivery(9, UserErased.subject(s.tenant_id, s.user_id), tombstone.wire()),
    ]
    decoded = decode(batch)
    [erasure] = decoded.erasures
    assert (erasure.kind, erasure.seq, erasure.target, erasure.subject) == (
        "user",
        9,
        f"user:{s.user_id}",
        f"apex.evt.{s.tenant_id}.{s.user_id}.>",
    )
    assert len(decoded.events) == 5  # the thread's events, without a warning about the tombstone
    assert decoded.without([erasure]) == []
    assert erasure.covers(s.tenant_id, s.user_id, new_id("thr"), 8, None)
    assert not erasure.covers(s.tenant_id, new_id("usr"), s.thread_id, 8, None)
    assert not erasure.covers(new_id("ten"), s.user_id, s.thread_id, 8, None)


def test_a_tombstone_covers_what_came_before_it_and_the_runs_it_names(story) -> None:
    s = story.scope()
    going = new_id("run")
    tombstone = UserErased(
        id=f"{s.user_id}:erased",
        tenant_id=s.tenant_id,
        user_id=s.user_id,
        data=UserErasedData(requested_by=s.user_id, runs=[going], account_closed=True),
    )
    [erasure] = decode([Delivery(50, UserErased.subject(s.tenant_id, s.user_id), tombstone.wire())]).erasures
    assert erasure.covers(s.tenant_id, s.user_id, s.thread_id, 49, None)
    assert erasure.covers(s.tenant_id, s.user_id, s.thread_id, 60, going), "a run still going when erased"
    assert not erasure.covers(s.tenant_id, s.user_id, s.thread_id, 60, new_id("run")), "a later run"
    assert erasure.covers(s.tenant_id, s.user_id, s.thread_id, 50, None), "the tombstone itself"
    assert not erasure.covers(s.tenant_id, s.user_id, s.thread_id, 51, None)
    again = erasure.extended_by(replace(erasure, seq=70, event_id="again", runs=frozenset()))
    assert (again.seq, again.event_id, again.runs) == (70, "again", frozenset({going}))
    assert again.covers(s.tenant_id, s.user_id, s.thread_id, 60, None), "a later tombstone reaches further"


def test_a_thread_erasure_is_a_delete_with_erase(story) -> None:
    s = story.scope(run=False)
    soft, hard = (
        ThreadDeleted(
            id=new_id("evt"),
            tenant_id=s.tenant_id,
            user_id=s.user_id,
            thread_id=s.thread_id,
            data=ThreadDeletedData(erase=erase, requested_by=s.user_id),
        )
        for erase in (False, True)
    )
    decoded = decode(story.deliveries([soft, hard, hard.model_copy(update={"id": new_id("evt")})]))
    assert len(decoded.events) == 3
    [first] = per_target(decoded.erasures)
    assert (first.kind, first.thread_id, first.seq, first.target) == (
        "thread",
        s.thread_id,
        3,
        f"thread:{s.thread_id}",
    ), "the latest tombstone of a thread reaches furthest"
    assert first.subject == thread_events(s.tenant_id, s.user_id, s.thread_id)


@pytest.mark.parametrize("forge", ["other tenant", "other user", "thread subject", "garbage"])
def test_a_forged_user_erasure_erases_nothing(story, forge: str) -> None:
    s = story.scope()
    tombstone = user_erased(s.tenant_id, s.user_id)
    subject, data = {
        "other tenant": (UserErased.subject(new_id("ten"), s.user_id), tombstone.wire()),
        "other user": (UserErased.subject(s.tenant_id, new_id("usr")), tombstone.wire()),
        "thread subject": (thread_events(s.tenant_id, s.user_id, s.thread_id), tombstone.wire()),
        "garbage": (UserErased.subject(s.tenant_id, s.user_id), b'{"type": "user.erased"}'),
    }[forge]
    assert decode([Delivery(1, subject, data)]).erasures == []


def test_retention_windows_from_settings() -> None:
    settings = PersistenceSettings(retention_postgres_days=90, retention_clickhouse_days=30)
    retention = settings.retention()
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert Retention.cutoff(retention.postgres_days, now) == datetime(2026, 3, 3, tzinfo=UTC)
    assert Retention.cutoff(retention.clickhouse_days, now) == datetime(2026, 5, 2, tzinfo=UTC)
    assert Retention.cutoff(retention.usage_days, now) is None  # 0 keeps everything
    with pytest.raises(ValueError, match="greater than or equal"):
        PersistenceSettings(retention_audit_days=-1)
