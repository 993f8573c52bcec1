"""The core's services on a fresh SQLite database in a test's directory, with one repository, for
tests that drive the core directly (no HTTP server)."""

from __future__ import annotations

from pathlib import Path

from dockyard.config import Settings
from dockyard.core.identity.caller import Caller, root_caller
from dockyard.core.registry import repositories
from dockyard.core.registry.repositories import RepositorySettings
from dockyard.core.services import Services
from dockyard.store.database import upgrade_async

ACCOUNT, REGION = "123456789012", "us-east-1"


def caller() -> Caller:
    return root_caller(ACCOUNT, REGION)


async def with_repository(tmp_path: Path, name: str = "app") -> Services:
    """Services on tmp_path (migrated database, filesystem blob store) holding repository `name`;
    the caller closes them."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'metadata.db'}"
    await upgrade_async(url)
    services = Services.from_settings(Settings(data_dir=tmp_path, database_url=url))
    await repositories.create_repository(services, caller(), ACCOUNT, name, RepositorySettings())
    return services
