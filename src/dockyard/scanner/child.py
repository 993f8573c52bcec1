"""The scan process: `python -m dockyard.scanner.child` reads {"layers": [{"digest", "path"}, ...]}
on standard input and writes {"inventory": ...} or {"error": "..."} on standard output.

It imports only the scanner, runs at a lower CPU priority than the server, and is killed by its
parent when it overruns; see scanner/run.py."""

from __future__ import annotations

import json
import os
import sys
import tempfile

from dockyard.scanner.inventory import inventory_of
from dockyard.scanner.layers import LayerError, PathLayer

# Leave the CPU to the registry first: a scan may wait, a pull should not.
NICENESS = 10


def main() -> int:
    os.nice(NICENESS)
    request = json.load(sys.stdin)
    layers = [PathLayer(layer["digest"], layer["path"]) for layer in request["layers"]]
    try:
        with tempfile.TemporaryDirectory(prefix="dockyard-scan-") as spool:
            reply = {"inventory": json.loads(inventory_of(layers, spool).to_json())}
    except LayerError as exc:
        reply = {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - whatever went wrong is the scan's failure reason
        reply = {"error": f"internal error: {type(exc).__name__}: {exc}"}
    json.dump(reply, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
