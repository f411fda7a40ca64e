"""When the kernel refuses ptrace, the profile says "not available" and why, and the load
it was to sample still runs."""

from __future__ import annotations

import os
from pathlib import Path

from bench.profile import profile

REFUSING = """#!/bin/sh
echo "Error: Failed to copy PyInterpreterState from process: Permission denied (os error 13)" >&2
exit 1
"""


async def test_a_refused_ptrace_is_reported_not_hidden(tmp_path: Path) -> None:
    fake = tmp_path / "py-spy"
    fake.write_text(REFUSING)
    fake.chmod(0o755)
    ran: list[bool] = []

    async def load() -> dict[str, int]:
        ran.append(True)
        return {"runs": 3}

    out = await profile({"gateway": os.getpid()}, 1, load, binary=str(fake))
    assert ran == [True]
    assert out["available"] is False
    assert "refused ptrace" in out["reason"] and "Permission denied" in out["reason"]
    assert out["services"]["gateway"]["available"] is False
    assert out["load"] == {"runs": 3}
