"""A circuit breaker: after ``threshold`` consecutive failures it opens and refuses calls
for ``reset_after_s``; then one trial call decides whether it closes again."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from apex_contracts import ErrorCode, Unavailable

T = TypeVar("T")
State = Literal["closed", "open", "half_open"]


class CircuitOpen(Unavailable):
    """Refused without trying: the dependency failed repeatedly just now."""


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        threshold: int = 5,
        reset_after_s: float = 5.0,
        code: ErrorCode = ErrorCode.SERVICE_UNAVAILABLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.reset_after_s = reset_after_s
        self.code = code
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self.opened_count = 0

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_after_s:
            return "half_open"
        return "open"

    def check(self) -> None:
        """Raises CircuitOpen when calls are refused right now."""
        if self.state == "open":
            raise CircuitOpen(f"{self.name} is unavailable (circuit open)", code=self.code)

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def failure(self) -> None:
        self._failures += 1
        if self.state == "half_open" or self._failures >= self.threshold:
            if self._opened_at is None:
                self.opened_count += 1
            self._opened_at = self._clock()

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        failures: tuple[type[BaseException], ...],
    ) -> T:
        """Runs ``fn``; exceptions of the ``failures`` types count against the breaker
        (and are re-raised); any other exception passes through without counting."""
        self.check()
        try:
            result = await fn()
        except failures:
            self.failure()
            raise
        self.success()
        return result
