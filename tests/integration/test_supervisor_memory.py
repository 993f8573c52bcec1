"""`dockyard serve` runs its commands, migrations and first-start bootstrap, then becomes a small
supervisor: the process that forks the workers holds none of the app, whose pages would otherwise
count in every process's memory (issue 19)."""

from __future__ import annotations

from pathlib import Path

import psutil

from tests.support.server import ServerFactory

# Compiled parts of what only the workers load: SQLAlchemy's extensions, SQLite, greenlet.
APP_LIBRARIES = ("/sqlalchemy/", "/_sqlite3.", "/greenlet/")


def mapped_app_libraries(pid: int) -> set[str]:
    text = Path(f"/proc/{pid}/maps").read_text()
    paths = {line.split()[-1] for line in text.splitlines() if len(line.split()) >= 6}
    return {path for path in paths if any(marker in path for marker in APP_LIBRARIES)}


def test_the_supervisor_maps_none_of_the_app(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory(args=["--workers", "2"])
    assert server.process is not None
    supervisor = psutil.Process(server.process.pid)
    workers = supervisor.children()
    assert len(workers) >= 2
    # The check sees the app where it is: in each worker.
    assert any(mapped_app_libraries(worker.pid) for worker in workers)
    assert mapped_app_libraries(supervisor.pid) == set()
