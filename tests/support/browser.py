"""Headless Chromium for the console's end-to-end tests: Debian's own `chromium`, driven by
Playwright for Python (never a browser Playwright downloads), and screenshots as test artifacts."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, Page, Playwright

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that reaches out to the network on its own.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class BrowserMissing(RuntimeError):
    pass


def launch_chromium(playwright: Playwright) -> Browser:
    if not Path(CHROMIUM).exists():
        raise BrowserMissing(f"{CHROMIUM} is not installed: run scripts/test, which installs Debian's chromium")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))


@dataclass
class Screenshots:
    """Full-page screenshots numbered in the order taken: test-artifacts/<test>/<NN>-<name>.png."""

    directory: Path
    taken: list[Path] = field(default_factory=list)

    @classmethod
    def for_test(cls, test_name: str) -> Screenshots:
        directory = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        return cls(directory)

    def __call__(self, page: Page, name: str) -> Path:
        path = self.directory / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path
