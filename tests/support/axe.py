"""axe-core (npm), installed once into a cache outside the repository and injected into console
pages to check them for accessibility faults (contrast among them).

The version is pinned by tests/e2e/a11y/package.json and package-lock.json (installed through
tests/support/npm_cache.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from tests.support.npm_cache import node_modules

A11Y_DIR = Path(__file__).resolve().parents[1] / "e2e" / "a11y"
INSTALL_TIMEOUT = 600.0


def axe_script() -> Path:
    """axe.min.js of the pinned axe-core, installing it first if no earlier run has."""
    return node_modules(A11Y_DIR, "axe-core", INSTALL_TIMEOUT) / "axe-core" / "axe.min.js"


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
