"""One `dockyard serve --workers 2` per fuzz module, and a watch that each test checks it with.
Tests also name `fuzz_server` itself so that a failure's report carries the tail of its log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.harness import ServerWatch
from tests.support.server import HOST, DockyardServer, ServerFactory, free_port

WORKERS = 2


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    factory = ServerFactory(tmp_path_factory.mktemp("fuzz"))
    # Metrics on a port of this server's own: other servers of the test run listen at the default.
    metrics = {"DOCKYARD_METRICS_ADDRESS": f"{HOST}:{free_port()}"}
    yield factory(args=["--workers", str(WORKERS)], env=metrics)
    factory.close()


@pytest.fixture(scope="module")
def server_watch(fuzz_server: DockyardServer) -> ServerWatch:
    return ServerWatch.start(fuzz_server, WORKERS)


@pytest.fixture
def watch(server_watch: ServerWatch) -> ServerWatch:
    """The module's watch, its log mark moved to this test's start."""
    server_watch.mark()
    return server_watch
