"""npm packages the tests need, installed once into a cache outside the repository.

A directory holding a package.json and its package-lock.json pins what to install; `npm ci`
installs it on first use into ~/.cache/dockyard-tests/<name>/<hash of the pinned files>/, and later
runs reuse it. Installs go beside their target and are renamed into place, so an interrupted one is
never reused; several pytest processes starting at once take turns on a file lock."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.clients import find_tool, run

PINNED_FILES = ("package.json", "package-lock.json")
_MARKER = ".installed"


class NpmInstallError(RuntimeError):
    pass


def cache_root(name: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dockyard-tests" / name


def pinned_key(package_dir: Path) -> str:
    """Names one installation: changes whenever a pinned version (or the lock) does."""
    digest = hashlib.sha256()
    for file_name in PINNED_FILES:
        digest.update(file_name.encode() + b"\0" + (package_dir / file_name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def node_modules(package_dir: Path, name: str, timeout: float, root: Path | None = None) -> Path:
    """The node_modules of what `package_dir` pins, installing it first if no earlier run has."""
    root = root or cache_root(name)
    target = root / pinned_key(package_dir)
    if not (target / _MARKER).exists():
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root / f"{target.name}.lock"):
            if not (target / _MARKER).exists():
                _install_into(package_dir, target, timeout)
    return target / "node_modules"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install_into(package_dir: Path, target: Path, timeout: float) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    try:
        for file_name in PINNED_FILES:
            shutil.copyfile(package_dir / file_name, staging / file_name)
        command = [find_tool("npm"), "ci", "--prefix", str(staging), "--ignore-scripts", "--no-audit", "--no-fund"]
        result = run(command, env={**os.environ, "npm_config_update_notifier": "false"}, timeout=timeout)
        if result.returncode != 0:
            raise NpmInstallError(f"npm ci failed in {staging}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        (staging / _MARKER).write_text(pinned_key(package_dir))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
