"""Alembic environment of the persistence service.

Runs only through ``apex_persistence.postgres.migrate``, which hands over an open
connection in ``config.attributes["connection"]``. The version table is
``apex.alembic_version_persistence`` so the auth service keeps its own tree in the
same database.
"""

from __future__ import annotations

from alembic import context

from apex_persistence.postgres.tables import SCHEMA, VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `python -m apex_persistence migrate`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    version_table_schema=SCHEMA,
    include_schemas=True,
    include_name=lambda name, type_, _parent: type_ != "schema" or name == SCHEMA,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
