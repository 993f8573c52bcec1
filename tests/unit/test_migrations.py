"""The migrations build exactly the schema the code declares: nothing missing, nothing extra."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from dockyard.store import schema
from dockyard.store.database import upgrade


def test_migrated_database_matches_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    engine.dispose()
    assert differences == []
