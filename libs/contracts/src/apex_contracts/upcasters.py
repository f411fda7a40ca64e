"""The upcasters of events whose shape changed: each turns version n of a type into n + 1.

``parse_event`` applies them before validation, so every reader folds the current shape
only. Registering happens on import (``apex_contracts.events`` imports this module).

- ``message.delta`` v1 → v2: v1 deltas written before deltas named their step carry the
  step only in their id (``<run_id>:<step>:…``); v2 always names it in ``data.step``.
"""

from __future__ import annotations

from typing import Any

from apex_contracts.envelope import upcaster


@upcaster("message.delta", 1)
def message_delta_v1_to_v2(message: dict[str, Any]) -> dict[str, Any]:
    data = message["data"]
    if data.get("step") is None:
        parts = str(message.get("id", "")).split(":")
        if len(parts) > 2 and parts[1].isdigit():
            data["step"] = int(parts[1])
    return message
