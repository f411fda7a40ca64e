"""The assistant's streamed answers, folded from a thread's events in the order they come
(live or replayed: the same events give the same text).

``message.delta`` chunks build each streamed message (by ``message_id``, in ``index``
order, each chunk once); the run's current text is its latest message that still counts.
``message.superseded`` retires the messages an agent step's earlier attempt streamed
before it died: their text is dropped, and any late chunk of them (a paused worker that
woke up) is ignored. ``run.completed`` carries the checked final text, which wins.

    answers = Answers()
    async for frame in socket.frames():
        if frame["type"] == "event":
            answers.apply(frame["event"])
    print(answers.text(run_id))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Message:
    chunks: dict[int, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(self.chunks[i] for i in sorted(self.chunks))


@dataclass
class _Run:
    messages: dict[str, _Message] = field(default_factory=dict)  # in the order they started
    final: str | None = None


class Answers:
    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._superseded: set[str] = set()

    def apply(self, event: dict[str, Any]) -> None:
        """Folds one event of the thread (the ``event`` of an ``event`` frame)."""
        run_id = event.get("run_id")
        data = event.get("data") or {}
        kind = event.get("type")
        if not run_id:
            return
        run = self._runs.setdefault(run_id, _Run())
        if kind == "message.delta":
            message_id = data.get("message_id")
            if not message_id or message_id in self._superseded:
                return
            run.messages.setdefault(message_id, _Message()).chunks.setdefault(
                int(data.get("index", 0)), str(data.get("text", ""))
            )
        elif kind == "message.superseded":
            for message_id in data.get("message_ids") or []:
                self._superseded.add(message_id)
                run.messages.pop(message_id, None)
        elif kind == "run.completed":
            run.final = str(((data.get("response") or {}).get("text")) or "")

    def streamed(self, run_id: str) -> str:
        """What the run has streamed so far that still counts: its latest message."""
        run = self._runs.get(run_id)
        if run is None or not run.messages:
            return ""
        return list(run.messages.values())[-1].text

    def text(self, run_id: str) -> str:
        """The run's answer: the final text once the run completed, else what it streamed."""
        run = self._runs.get(run_id)
        if run is not None and run.final is not None:
            return run.final
        return self.streamed(run_id)

    def superseded(self, message_id: str) -> bool:
        return message_id in self._superseded
