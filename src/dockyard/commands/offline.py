"""What the offline commands (`dockyard admin`, `gc`, `storage`, `lifecycle run`, `vulndb`, `gate`,
`sbom`) share: opening the data a server uses, beside it or without it, and running core work on it."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from dockyard.config import Settings
from dockyard.core.errors import DockyardError
from dockyard.core.services import Services
from dockyard.store.database import upgrade

T = TypeVar("T")
# The data directory holds every account's secret keys and the token-signing secret (metadata.db),
# and private images' blobs: nobody but the server's own user may read anything in it.
PRIVATE_UMASK = 0o077
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def prepared(settings: Settings) -> Settings:
    """`settings`, once its data directory exists, is private and its database schema is up to date."""
    secure_data_dir(settings.data_dir)
    upgrade(settings.sqlalchemy_url)
    return settings


def secure_data_dir(data_dir: Path) -> None:
    """Make files this process (and its workers) create private whatever the caller's umask, create
    `data_dir` 0700, and take away group and other access from everything an older version
    left in it (files 0600, directories 0700)."""
    os.umask(PRIVATE_UMASK)
    try:
        data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        _make_private(data_dir)
    except PermissionError as exc:
        # Files of another user in it: say which, rather than serve with them readable.
        raise click.ClickException(f"cannot make the data directory private: {exc}") from exc


def _make_private(root: Path) -> None:
    """One walk with os.scandir (a data directory can hold a great many blobs); a chmod only where
    a mode is wrong, so a directory that is already private costs a stat per entry."""
    _chmod_if_needed(str(root), os.stat(root).st_mode, PRIVATE_DIR_MODE)
    pending = [str(root)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    continue  # chmod would follow it out of the data directory
                mode = entry.stat(follow_symlinks=False).st_mode
                if entry.is_dir(follow_symlinks=False):
                    _chmod_if_needed(entry.path, mode, PRIVATE_DIR_MODE)
                    pending.append(entry.path)
                else:
                    _chmod_if_needed(entry.path, mode, PRIVATE_FILE_MODE)


def _chmod_if_needed(path: str, mode: int, private: int) -> None:
    """Clear group and other bits; the owner's own bits stay (an executable stays executable)."""
    if stat.S_IMODE(mode) & 0o077:
        os.chmod(path, (stat.S_IMODE(mode) & 0o700) | (private & 0o700), follow_symlinks=False)


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
