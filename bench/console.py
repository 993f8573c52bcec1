"""The console scenario (Dockyard only): the server time of the console's images list of the
seeded 10,000-image repository (bench/ecr, the ecr scenario's), and of one image's page.

Issue 17 bounds a 10,000-image repository's page at 50 ms of server time. The figure is the
console's own Server-Timing (`app;dur=`: from the request reaching the page to its answer,
authentication and rendering included, the network and compression not), as a browser's
developer tools show it; the wall-clock time of each request over loopback is reported beside it."""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable

from bench.results import Figure, Results
from bench.settings import Settings, percentiles
from bench.targets import Target

REPOSITORY = "bench/ecr"
BOUND_MS = 50.0
SAMPLES = 30
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_TIMING = re.compile(r"app;dur=([0-9.]+)")
_DIGEST = re.compile(r'name="digest" value="(sha256:[0-9a-f]{64})"')


class ConsoleVisitor:
    """A browser's part: the session cookie, signing in, and GETs that report server time."""

    def __init__(self, target: Target) -> None:
        self.base = target.url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        assert target.console_key is not None
        key_id, secret = target.console_key
        with self.opener.open(f"{self.base}/console/sign-in") as answer:
            token = self._csrf(answer.read().decode())
        form = {"csrf_token": token, "access_key_id": key_id, "secret_access_key": secret, "next": ""}
        with self.opener.open(f"{self.base}/console/sign-in", urllib.parse.urlencode(form).encode()) as answer:
            if "/sign-in" in answer.url:
                raise RuntimeError("the console refused the bench's access key")

    @staticmethod
    def _csrf(page: str) -> str:
        found = _CSRF.search(page)
        if found is None:
            raise RuntimeError("no CSRF token on the sign-in page")
        return found.group(1)

    def get(self, path: str) -> tuple[str, float, float]:
        """(the page, its server time, the request's wall-clock time), both in seconds."""
        started = time.perf_counter()
        with self.opener.open(f"{self.base}{path}") as answer:
            page = answer.read().decode()
            timing = answer.headers.get("Server-Timing") or ""
        wall = time.perf_counter() - started
        found = _TIMING.search(timing)
        if found is None:
            raise RuntimeError(f"{path} answered without a Server-Timing header")
        return page, float(found.group(1)) / 1000, wall


def console(settings: Settings, target: Target, results: Results) -> None:
    if target.ecr is None or target.console_key is None:
        return
    # The ecr scenario's repository (imported here: bench.scenarios lists this scenario).
    from bench.scenarios import seed_images

    seed_images(settings, target)
    visitor = ConsoleVisitor(target)
    base = f"/console/repositories/{REPOSITORY}/-/"
    first_page = visitor.get(base + "images")[0]
    digest = _DIGEST.search(first_page)
    pages: dict[str, tuple[str, str]] = {
        "newest": ("images, newest first", base + "images"),
        "deep": ("images, page 100 (50 a page)", base + "images?page=100"),
        "size": ("images sorted by size", base + "images?sort=size"),
        "digest": ("images sorted by digest", base + "images?sort=digest"),
        "pulled": ("images sorted by last pull", base + "images?sort=pulled"),
        "search": ("images, tag search", base + "images?q=t0999"),
    }
    if digest:
        pages["image"] = ("one image's page", base + f"image?digest={digest.group(1)}")
    where = f"{settings.images} images"
    for key, (label, path) in pages.items():
        server, wall = _sample(lambda p=path: visitor.get(p))
        p50, p99 = percentiles(server)
        title = f"Console {label}: server time p50 ({where})"
        figure = Figure(f"console-{key}-p50", title, "ms", False, goal="bound", bound=BOUND_MS)
        results.add(figure, target.name, p50)
        results.add(Figure(f"console-{key}-p99", f"Console {label}: server time p99 ({where})", "ms", False,
                           goal="info"), target.name, p99)  # fmt: skip
        results.add(Figure(f"console-{key}-wall", f"Console {label}: request p50 over loopback ({where})", "ms",
                           False, goal="info"), target.name, percentiles(wall)[0])  # fmt: skip


def _sample(call: Callable[[], tuple[str, float, float]]) -> tuple[list[float], list[float]]:
    server: list[float] = []
    wall: list[float] = []
    call()  # the first render compiles the page's template
    for _ in range(SAMPLES):
        _, spent, took = call()
        server.append(spent)
        wall.append(took)
    return server, wall


SCENARIOS: dict[str, Callable[[Settings, Target, Results], None]] = {"console": console}
