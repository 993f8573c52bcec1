"""axe-core (npm), installed once into a cache outside the repository and injected into console
pages to check them for accessibility faults (contrast among them).

The version is pinned by tests/e2e/a11y/package.json and package-lock.json; `npm ci` installs it on
first use into ~/.cache/dockyard-tests/axe-core/<hash of the pinned files>/, reused afterwards."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from tests.support.clients import find_tool, run

A11Y_DIR = Path(__file__).resolve().parents[1] / "e2e" / "a11y"
PINNED_FILES = ("package.json", "package-lock.json")
INSTALL_TIMEOUT = 600.0
_MARKER = ".installed"


class AxeInstallError(RuntimeError):
    pass


def _cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dockyard-tests" / "axe-core"


def _pinned_key() -> str:
    digest = hashlib.sha256()
    for name in PINNED_FILES:
        digest.update(name.encode() + b"\0" + (A11Y_DIR / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def axe_script() -> Path:
    """axe.min.js of the pinned axe-core, installing it first if no earlier run has."""
    root = _cache_root()
    target = root / _pinned_key()
    script = target / "node_modules" / "axe-core" / "axe.min.js"
    if (target / _MARKER).exists():
        return script
    root.mkdir(parents=True, exist_ok=True)
    # Several pytest processes may start at once: one installs, the others wait and reuse it.
    with _locked(root / f"{target.name}.lock"):
        if not (target / _MARKER).exists():
            _install_into(target)
    return script


def _install_into(target: Path) -> None:
    # Installed beside the target and renamed into place, so an interrupted install is never reused.
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    try:
        for name in PINNED_FILES:
            shutil.copyfile(A11Y_DIR / name, staging / name)
        command = [find_tool("npm"), "ci", "--prefix", str(staging), "--ignore-scripts", "--no-audit", "--no-fund"]
        result = run(command, env={**os.environ, "npm_config_update_notifier": "false"}, timeout=INSTALL_TIMEOUT)
        if result.returncode != 0:
            raise AxeInstallError(f"npm ci failed in {staging}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        (staging / _MARKER).write_text(_pinned_key())
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (WCAG 2.1 A and AA rules and best practices),
    each as {id, impact, help, targets}."""
    # Injected through the DevTools protocol, so the console's CSP (script-src 'self') does not apply.
    page.add_script_tag(content=axe_script().read_text())
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                targets: v.nodes.map(n => n.target.join(" ")).slice(0, 5),
            }));
        }"""
    )
    return found
