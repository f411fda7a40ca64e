"""Property: any interleaving of publishes, deliveries, acks, ack timeouts, drops and
resumes delivers every event of a thread to the client exactly once, in order.

The server side is the gateway's DeliveryWindow; the client side is what
apex_client.ApexSocket does: drop seqs it has seen, resume after the last one."""

from __future__ import annotations

from collections import deque

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from apex_gateway.ws.window import DeliveryWindow, ResyncNeeded


class Delivery(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[int] = []
        self.next_seq = 1
        self.now = 0.0
        self.window: DeliveryWindow | None = None
        self.pipe: deque[int] = deque()
        self.seen = 0
        self.accepted: list[int] = []
        self.sent_this_connection: list[int] = []
        self.connect()

    # --- server ------------------------------------------------------------------------

    def connect(self) -> None:
        self.window = DeliveryWindow(self.seen, ack_timeout_s=1.0, max_resends=3, max_unacked=8)
        self.pipe.clear()
        self.sent_this_connection = []
        for seq in self.log:
            self.offer(seq)

    def offer(self, seq: int) -> None:
        assert self.window is not None
        try:
            if self.window.offer(seq, str(seq), self.now):
                self.pipe.append(seq)
                self.sent_this_connection.append(seq)
        except ResyncNeeded:
            self.resync()

    def resync(self) -> None:
        # resync_required reaches the client, which resubscribes after what it has seen
        self.connect()

    # --- rules -------------------------------------------------------------------------

    @rule(gap=st.integers(min_value=1, max_value=5))
    def publish(self, gap: int) -> None:
        seq = self.next_seq + gap - 1
        self.next_seq = seq + 1
        self.log.append(seq)
        if self.window is not None:
            self.offer(seq)

    @precondition(lambda self: bool(self.pipe))
    @rule(count=st.integers(min_value=1, max_value=4))
    def deliver(self, count: int) -> None:
        for _ in range(min(count, len(self.pipe))):
            seq = self.pipe.popleft()
            if seq > self.seen:
                self.accepted.append(seq)
                self.seen = seq

    @precondition(lambda self: self.window is not None)
    @rule()
    def ack(self) -> None:
        assert self.window is not None
        self.window.ack(self.seen, self.now)

    @precondition(lambda self: self.window is not None)
    @rule(dt=st.floats(min_value=0.1, max_value=20.0))
    def tick(self, dt: float) -> None:
        assert self.window is not None
        self.now += dt
        try:
            for frame in self.window.due(self.now):
                self.pipe.append(int(frame))
        except ResyncNeeded:
            self.resync()

    @precondition(lambda self: self.window is not None)
    @rule()
    def drop(self) -> None:
        self.window = None
        self.pipe.clear()

    @precondition(lambda self: self.window is None)
    @rule()
    def reconnect(self) -> None:
        self.connect()

    # --- promises ----------------------------------------------------------------------

    @invariant()
    def accepted_is_a_gapless_prefix_of_the_log(self) -> None:
        assert self.accepted == self.log[: len(self.accepted)]

    @invariant()
    def a_connection_never_sends_a_seq_twice_except_as_a_resend(self) -> None:
        assert self.sent_this_connection == sorted(set(self.sent_this_connection))

    def teardown(self) -> None:
        if self.window is None:
            self.connect()
        while self.pipe:
            self.deliver(len(self.pipe))
        assert self.accepted == self.log, "every event exactly once, in order"


Delivery.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestDelivery = Delivery.TestCase


def test_a_client_that_never_acks_is_not_resent_to() -> None:
    window = DeliveryWindow(0, ack_timeout_s=1.0)
    assert window.offer(5, "5", 0.0)
    assert not window.offer(5, "5", 0.0)
    assert window.due(100.0) == []


def test_resends_back_off_and_then_require_a_resync() -> None:
    window = DeliveryWindow(0, ack_timeout_s=1.0, max_resends=2)
    window.offer(1, "1", 0.0)
    window.ack(1, 0.0)
    window.offer(2, "2", 0.0)
    assert window.due(0.5) == []
    assert window.due(1.0) == ["2"]
    assert window.due(2.0) == []
    assert window.due(5.0) == ["2"]
    try:
        window.due(100.0)
    except ResyncNeeded as resync:
        assert resync.last_seq == 1
    else:
        raise AssertionError("resends are capped")
