"""`dockyard serve`, exactly as users run it, but with a higher images-per-repository limit.

The ECR scenario needs 10,000 images in one repository and `dockyard serve` has no flag for that
limit (ECR's default is 1000), so this swaps in Settings whose Limits allow more. The limit reaches
the worker processes with the rest of the settings.

    python -m bench.dockyard_serve LIMIT [dockyard serve options...]
"""

from __future__ import annotations

import functools
import sys

from dockyard import cli
from dockyard.config import Limits, Settings


def main(argv: list[str]) -> None:
    limit, *serve_args = argv
    limits = Limits(images_per_repository=int(limit))
    cli.Settings = functools.partial(Settings, limits=limits)  # type: ignore[misc]
    cli.main(["serve", *serve_args])


if __name__ == "__main__":
    main(sys.argv[1:])
