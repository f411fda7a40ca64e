"""Alembic environment of the auth service.

Runs only through ``apex_auth.migrate``, which hands over an open connection in
``config.attributes["connection"]``. The version table is ``auth.alembic_version_auth``
so other services can keep their own Alembic trees in the same database.
"""

from __future__ import annotations

from alembic import context

from apex_auth.tables import SCHEMA, VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `python -m apex_auth migrate`")

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
