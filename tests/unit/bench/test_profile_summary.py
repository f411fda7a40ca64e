"""The py-spy summary names where a service spends its busy samples: waiting threads and
the bench's own counting thread are set apart, shares add up over the busy samples."""

from __future__ import annotations

from bench.profile import summarise

SITE = "/w/.venv/lib/python3.11/site-packages"
COLLAPSED = f"""\
run (/usr/lib/python3.11/asyncio/runners.py:118);handle (/w/services/persistence/src/apex_persistence/projection/runner.py:40);loads ({SITE}/orjson/__init__.py:1) 30
run (/usr/lib/python3.11/asyncio/runners.py:118);handle (/w/services/persistence/src/apex_persistence/projection/runner.py:41);query ({SITE}/chdb/state/sqlitelike.py:9) 50
run (/usr/lib/python3.11/asyncio/runners.py:118);Runner.run (/usr/lib/python3.11/asyncio/runners.py:118) 20
_bootstrap (/usr/lib/python3.11/threading.py:1002);Condition.wait (/usr/lib/python3.11/threading.py:320) 40
_bootstrap (/usr/lib/python3.11/threading.py:1002);dump (/w/bench/instrument/sitecustomize.py:120) 7
not a stack line
"""


def test_busy_samples_are_shared_by_function_and_package() -> None:
    summary = summarise(COLLAPSED)
    assert summary["samples"] == 100
    assert summary["waiting_samples"] == 40
    assert summary["top_self_pct"][0] == ["query (chdb/state/sqlitelike.py)", 50.0]
    assert dict(map(tuple, summary["packages_self_pct"])) == {
        "chdb": 50.0,
        "orjson": 30.0,
        "stdlib:asyncio": 20.0,
    }
    inclusive = dict(map(tuple, summary["top_inclusive_pct"]))
    assert inclusive["handle (apex_persistence/projection/runner.py)"] == 80.0, (
        "lines of one function are one entry"
    )
    assert not any("sitecustomize" in name for name in inclusive), (
        "the bench's own thread is not the service's"
    )


def test_an_empty_profile_has_no_shares() -> None:
    assert summarise("")["top_self_pct"] == []
