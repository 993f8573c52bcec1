"""What the offline commands (`dockyard admin`, `gc`, `storage`, `lifecycle run`, `vulndb`, `gate`,
`sbom`) share: opening the data a server uses, beside it or without it, and running core work on it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from dockyard.config import Settings
from dockyard.core.services import Services
from dockyard.errors import DockyardError
from dockyard.store.database import upgrade

T = TypeVar("T")


def prepared(settings: Settings) -> Settings:
    """`settings`, once its data directory exists and its database schema is up to date."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.sqlalchemy_url)
    return settings


def run_with_services(settings: Settings, work: Callable[[Services], Awaitable[T]]) -> T:
    """Run `work` with the core's services; an AWS-style error ends the command with its message."""

    async def main() -> T:
        svc = Services.from_settings(settings)
        try:
            return await work(svc)
        finally:
            await svc.close()

    try:
        return asyncio.run(main())
    except DockyardError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc
