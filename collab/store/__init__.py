"""Persistence: schema, migrations, the async engine and the SQL for each domain."""

from collab.store.engine import Store, open_store

__all__ = ["Store", "open_store"]
