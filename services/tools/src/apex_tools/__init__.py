"""The tools service: typed analytics tools over the tenant's usage, with a ledger."""

from apex_tools.executor import ToolExecutor
from apex_tools.ledger import KvLedger, LedgerEntry
from apex_tools.registry import Tool, default_tools

__all__ = ["KvLedger", "LedgerEntry", "Tool", "ToolExecutor", "default_tools"]
