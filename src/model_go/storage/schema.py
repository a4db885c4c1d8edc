"""The whole schema: imports every table module so their tables are registered on one MetaData."""

from __future__ import annotations

from model_go.storage import account_tables, billing_tables, tables
from model_go.storage.metadata import metadata

__all__ = ["account_tables", "billing_tables", "metadata", "tables"]
