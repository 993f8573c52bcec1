"""Fixtures for tests that drive a real Dockyard server with real clients.

- dockyard_server: one server for the whole session (root key, account, region, url, env()).
- dockyard_server_factory: start more servers with their own args/env/data dir for one test.
- boto3_client(service, **kw), aws(*args, ...): AWS clients bound to dockyard_server.
- podman, skopeo: container tools with isolated storage, registries.conf (the servers' registries
  marked insecure) and auth file.
- chromium, screenshots: Debian's headless Chromium through Playwright (console tests), and
  full-page screenshots saved under test-artifacts/<test>/.
Fixtures are lazy: unit tests that use none of them start nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from tests.support.browser import Screenshots, launch_chromium
from tests.support.clients import AwsCli, Boto3Clients, ContainersConfig, Podman, Skopeo
from tests.support.server import DockyardServer, ServerFactory

if TYPE_CHECKING:
    from playwright.sync_api import Browser

STDERR_TAIL = 6000

# The suite runs on shared, busy machines: no property test may fail because generating or running
# an example was slow there. Tests that set their own settings inherit these.
settings.register_profile("shared-machine", deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile("shared-machine")


@pytest.fixture(scope="session")
def containers_config(tmp_path_factory: pytest.TempPathFactory) -> ContainersConfig:
    return ContainersConfig(tmp_path_factory.mktemp("containers"))


@pytest.fixture(scope="session")
def _session_servers(
    tmp_path_factory: pytest.TempPathFactory, containers_config: ContainersConfig
) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path_factory.mktemp("servers"), on_started=[containers_config.trust_server])
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def dockyard_server(_session_servers: ServerFactory) -> DockyardServer:
    """The session's server. Tests must not stop it; start their own with dockyard_server_factory."""
    return _session_servers()


@pytest.fixture
def dockyard_server_factory(tmp_path: Path, containers_config: ContainersConfig) -> Iterator[ServerFactory]:
    """`dockyard_server_factory(args=[...], env={...}, data_dir=..., account_id=..., start=False)`:
    servers for one test, stopped (SIGTERM, then SIGKILL) when it ends."""
    factory = ServerFactory(tmp_path / "servers", on_started=[containers_config.trust_server])
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def boto3_client(dockyard_server: DockyardServer) -> Boto3Clients:
    return Boto3Clients(dockyard_server)


@pytest.fixture(scope="session")
def aws(dockyard_server: DockyardServer) -> AwsCli:
    return AwsCli(dockyard_server)


@pytest.fixture(scope="session")
def podman(containers_config: ContainersConfig) -> Podman:
    return Podman(containers_config)


@pytest.fixture(scope="session")
def skopeo(containers_config: ContainersConfig) -> Skopeo:
    return Skopeo(containers_config)


@pytest.fixture
def chromium() -> Iterator[Browser]:
    """A headless Chromium for one test (Playwright's sync API must not outlive it: async
    tests run their own event loops)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots.for_test(request.node.name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, show what the servers the test used wrote to stderr."""
    report = yield
    if report.failed:
        for name, server in _servers_of(item):
            state = "running" if server.running else f"NOT RUNNING, exit code {server.returncode}"
            tail = server.stderr()[-STDERR_TAIL:]
            report.sections.append((f"{name} stderr, tail ({state}, {server.stderr_path})", tail))
    return report


def _servers_of(item: pytest.Item) -> list[tuple[str, DockyardServer]]:
    found: dict[int, tuple[str, DockyardServer]] = {}
    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, DockyardServer):
            found.setdefault(id(value), (name, value))
        elif isinstance(value, AwsCli | Boto3Clients):
            found.setdefault(id(value.server), ("dockyard_server", value.server))
        elif isinstance(value, ServerFactory):
            for i, server in enumerate(value.servers):
                found.setdefault(id(server), (f"{name}[{i}]", server))
    return list(found.values())
