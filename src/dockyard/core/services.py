"""What every core operation needs: settings, the metadata database and the blob store."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import cast

from sqlalchemy import insert, select

from dockyard.config import Settings
from dockyard.store import capacity, schema
from dockyard.store.blobs.factory import open_blob_store
from dockyard.store.blobs.filesystem import FilesystemBlobStore
from dockyard.store.blobs.interface import BlobStore
from dockyard.store.database import Database, sqlite_path


@dataclass
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    # Signs registry tokens and download URLs; shared by every node through the database.
    token_secret: bytes = b""

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        db = Database(settings.sqlalchemy_url, durable=settings.sync_writes)
        store = open_blob_store(settings)
        # Readiness watches free space wherever this process writes: the data directory (audit
        # trail, SQLite), and the blob store when it is a directory elsewhere.
        capacity.HEALTH.watch(settings.data_dir)
        database_file = sqlite_path(settings.sqlalchemy_url)
        if database_file is not None:
            capacity.HEALTH.watch(database_file.parent)
        if isinstance(store, FilesystemBlobStore):
            capacity.HEALTH.watch(store.root)
        blobs = cast(BlobStore, capacity.GuardedBlobStore(store))
        return cls(settings=settings, db=db, blobs=blobs)

    async def load_token_secret(self) -> None:
        self.token_secret = bytes.fromhex(await self.server_value("token_secret", secrets.token_hex(32)))

    async def server_value(self, name: str, default: str) -> str:
        """The shared value `name`, set to `default` by whichever node asks first."""
        async with self.db.write() as conn:
            row = (
                await conn.execute(select(schema.server_values.c.value).where(schema.server_values.c.name == name))
            ).first()
            if row is not None:
                return str(row.value)
            await conn.execute(insert(schema.server_values).values(name=name, value=default))
            return default

    async def close(self) -> None:
        await self.blobs.close()
        await self.db.close()


def now() -> float:
    return time.time()
