"""An in-process Dockyard app for console tests (Starlette's TestClient), with a root key."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from dockyard.app import create_app
from dockyard.config import Settings
from dockyard.core.identity import accounts
from dockyard.core.identity.caller import Caller, root_caller
from dockyard.core.services import Services
from dockyard.store.database import upgrade

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROOT_KEY = "AKIAROOTKEYFORTESTS2"
ROOT_SECRET = "r" * 40
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Console:
    client: TestClient
    settings: Settings

    def run(self, work: Callable[[Services], Awaitable[Any]]) -> Any:
        """Run core calls against the same data, outside the app's own event loop."""

        async def go() -> Any:
            svc = Services.from_settings(self.settings)
            try:
                return await work(svc)
            finally:
                await svc.close()

        return asyncio.run(go())

    def csrf(self, path: str = "/console/sign-in") -> str:
        page = self.client.get(path)
        match = CSRF_INPUT.search(page.text)
        assert match, page.text
        return match.group(1)

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        """POST a form as the signed-in visitor, with the session's CSRF token."""
        token = self.csrf("/console/repositories")
        return self.client.post(path, data={**(data or {}), "csrf_token": token}, follow_redirects=False, **kw)

    def sign_in(self, key_id: str = ROOT_KEY, secret: str = ROOT_SECRET) -> Any:
        token = self.csrf()
        form = {"csrf_token": token, "access_key_id": key_id, "secret_access_key": secret, "next": ""}
        return self.client.post("/console/sign-in", data=form, follow_redirects=False)


def console_app(tmp_path: Path, base_url: str = "http://testserver", **settings: Any) -> Iterator[Console]:
    # Offline unless a test asks: a fresh app would otherwise fetch osv.dev's data at once.
    settings.setdefault("vulndb_update_interval_seconds", 0.0)
    config = Settings(data_dir=tmp_path / "data", sync_writes=False, **settings)
    config.data_dir.mkdir(parents=True)
    upgrade(config.sqlalchemy_url)
    console = Console(TestClient(create_app(config), base_url=base_url), config)

    async def bootstrap(svc: Services) -> None:
        await accounts.ensure_account(svc, ACCOUNT)
        await accounts.add_access_key(svc, ACCOUNT, None, ROOT_KEY, ROOT_SECRET)

    console.run(bootstrap)
    with console.client:
        yield console


def root() -> Caller:
    return root_caller(ACCOUNT, REGION)
