"""`dockyard serve`, exactly as users run it, but with higher images-per-repository and
repositories-per-account limits.

The ECR and growth scenarios need up to 100,000 images in one repository and 10,000 repositories,
and `dockyard serve` has no flag for those limits (ECR's defaults are 1000), so this swaps in
Settings whose Limits allow more. The limits reach the worker processes with the rest of the settings.

    python -m bench.dockyard_serve IMAGES_PER_REPOSITORY REPOSITORIES_PER_ACCOUNT [dockyard serve options...]
"""

from __future__ import annotations

import dataclasses
import functools
import sys

from dockyard.commands import main as cli
from dockyard.config import Limits, Settings


def main(argv: list[str]) -> None:
    images, repositories, *serve_args = argv
    limits = dataclasses.replace(
        Limits.from_environment(), images_per_repository=int(images), repositories_per_account=int(repositories)
    )
    cli.Settings = functools.partial(Settings, limits=limits)  # type: ignore[misc]
    cli.main(["serve", *serve_args])


if __name__ == "__main__":
    main(sys.argv[1:])
