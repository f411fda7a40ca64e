"""What a service pays once, paid before its first run: the price table is read by
``price_table.load`` (each pricing service calls it as it starts), pandas (which
pyarrow's first conversion loads) by persistence's ``usage_batch.warm``, and the tools'
JSON schemas, which a model's call sends every time, are generated once."""

from __future__ import annotations

import subprocess
import sys

from apex_contracts.tools import TOOL_SPECS, tool_schemas


def _loaded_by(setup: str, call: str, module: str) -> None:
    """In a fresh interpreter: ``module`` is not loaded after ``setup``, and is after ``call``."""
    script = (
        f"import sys\n{setup}\n"
        f"assert {module!r} not in sys.modules, 'loaded before the call'\n"
        f"{call}\nassert {module!r} in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_load_reads_the_bundled_price_table_so_the_first_lookup_does_not() -> None:
    _loaded_by("from apex_contracts import price_table", "price_table.load()", "genai_prices.data")


def test_tool_schemas_are_pydantics_schemas_and_each_call_gets_its_own_copy() -> None:
    first, second = tool_schemas(), tool_schemas()
    assert [s["function"]["name"] for s in first] == list(TOOL_SPECS)
    for schema in first:
        model = TOOL_SPECS[schema["function"]["name"]][0]
        assert schema["function"]["parameters"] == model.model_json_schema()
    first[0]["function"]["parameters"]["title"] = "changed by a caller"
    assert second[0]["function"]["parameters"]["title"] != "changed by a caller"
    assert tool_schemas()[0] == second[0]
    assert [s["function"]["name"] for s in tool_schemas(["usage_coverage"])] == ["usage_coverage"]


def test_persistence_warm_loads_what_pyarrows_first_conversion_would() -> None:
    _loaded_by("from apex_persistence.analytics import usage_batch", "usage_batch.warm()", "pandas")
