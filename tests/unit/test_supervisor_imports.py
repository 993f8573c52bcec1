"""The supervisor of `dockyard serve` (which forks the workers and serves /metrics) imports only
what supervising takes, not the app: what it holds counts in the memory of every process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# The app's own rooms and the libraries only the workers need.
APP_MODULES = (
    "dockyard.app",
    "dockyard.commands",
    "dockyard.core",
    "dockyard.doors",
    "dockyard.store",
    "dockyard.scanner",
    "dockyard.vulndb",
    "dockyard.workers",
    "dockyard.audit",
    "sqlalchemy",
    "starlette",
    "botocore",
    "jinja2",
)

# What `python -m dockyard.server` loads before it forks: the module, the logs and the listener.
SUPERVISOR = """
import json, sys
import dockyard.server, dockyard.observe.logs, dockyard.observe.scrape, granian
print(json.dumps(sorted(sys.modules)))
"""


def test_the_supervisor_loads_none_of_the_app(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", SUPERVISOR], capture_output=True, text=True, check=True, env=env)
    loaded = json.loads(done.stdout)
    assert [name for name in loaded if name.startswith(APP_MODULES)] == []
