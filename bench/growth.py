"""The growth scenario: how Dockyard's cost per request moves as one repository fills (1,000 →
10,000 images, and 100,000 with --growth-100k) and as the account fills (100 → 10,000
repositories). The target is a ratio largest/smallest of at most 1.5× for every operation.

Dockyard only: the reference registry has no ECR API. Seeding goes through the registry API
(manifest PUTs and CreateRepository from many clients at once) and is not timed. The scenario runs
once per bench run, whatever --rounds says, and makes `rounds` passes at each size instead, so the
figures are still medians over rounds.

A pass measures its operations in BLOCKS blocks taken in turn (every operation's first block, then
every operation's second, ...): on a shared machine a burst of load then falls on every operation
a little rather than on one operation's whole sample. Each operation gets `growth_samples` calls a
block, so its p99 is taken from BLOCKS times as many calls (with the default 50, the 3rd slowest
of 250, not the slowest of 50, which is a measure of the machine's worst moment); BatchDeleteImage
gets enough calls a pass that its p99 is not its slowest call either. The load average at each
size is noted beside the figures.

The sizes are measured minutes apart, and other work on a shared machine comes and goes in
between, so a ratio across sizes also measures how the machine's load moved. A control
repository, filled once to the smallest size, is measured in the same blocks as the growing one
at every size (the two taking turns, first one first, then the other): the "measured alongside"
ratios compare the largest repository with it under the same load, at the same moments, in the
same database. They answer whether a request costs more in a bigger repository; the ratios across
sizes answer it for a bigger database too, when the machine is quiet enough to tell."""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.registry import OCI_MANIFEST, Client, image_manifest
from bench.results import Figure, Results
from bench.settings import Settings, percentiles, say, timed
from bench.targets import Target

IMAGES_REPO = "bench/growth"
# Stays at the smallest size, measured alongside the growing repository (see the module docstring).
CONTROL_REPO = "bench/growth-control"
REPOSITORY_PREFIX = "bench-growth/r"
RATIO_BOUND = 1.5
LABEL = "Growth (Dockyard only)"
BLOCKS = 5
# Nearest-rank p99 is the slowest call below 101 calls: BatchDeleteImage gets at least this many.
P99_CALLS = 101


@dataclass(frozen=True)
class Operation:
    key: str
    label: str
    measure: Callable[[], list[float]]  # one block's seconds per call
    # One call per block (gc): a single time, its median over the blocks, not a latency distribution.
    single: bool = False


def dockyard_command() -> list[str]:
    """The installed `dockyard` script, preferring the one beside this interpreter (a venv's)."""
    beside = Path(sys.executable).parent / "dockyard"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dockyard")
    if found is None:
        raise RuntimeError("the dockyard command is not installed: pip install -e .")
    return [found]


class GrowingRepository:
    """One repository filled with tagged images sharing one config and one layer, each made
    distinct by an annotation; it keeps count of the images it seeded."""

    def __init__(self, settings: Settings, target: Target, name: str = IMAGES_REPO) -> None:
        self.settings, self.target, self.name = settings, target, name
        target.create_repository(name)
        self.config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        self.layer = b"growth layer\n" * 100
        with Client(target) as client:
            self.config_digest = client.ensure_blob(self.name, self.config)
            self.layer_digest = client.ensure_blob(self.name, self.layer)
        self.count = 0

    def manifest(self, note: str) -> bytes:
        return image_manifest(self.config_digest, len(self.config), [(self.layer_digest, len(self.layer))], note)

    def push(self, tags: list[str]) -> list[str]:
        """PUTs one new image under each tag from many clients at once; returns their digests."""
        clients = max(1, min(self.settings.growth_seed_clients, len(tags)))

        def run(part: list[str]) -> list[str]:
            with Client(self.target) as client:
                return [client.put_manifest(self.name, tag, self.manifest(f"growth {tag}")) for tag in part]

        with ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(run, tags[i::clients]) for i in range(clients)]
            return [digest for future in futures for digest in future.result()]

    def seed_to(self, size: int) -> None:
        step = 10 * self.settings.growth_seed_clients * 100
        while self.count < size:
            upto = min(size, self.count + step)
            self.push([f"g{i:06d}" for i in range(self.count, upto)])
            self.count = upto
            say(f"growth: {self.name} holds {self.count:,} of {size:,} images")


def _image_operations(repo: GrowingRepository, settings: Settings, target: Target) -> list[Operation]:
    """The operations timed at one repository size. The writes are undone by the BatchDeleteImage
    calls (which delete exactly what was added), so every pass sees the same size."""
    ecr, k, page = target.ecr, settings.growth_samples, settings.ecr_page
    rng = random.Random(repo.count)
    added: list[str] = []

    def manifest_get() -> list[float]:
        samples: list[float] = []
        with Client(target) as client:
            for _ in range(k):
                path = f"/v2/{repo.name}/manifests/g{rng.randrange(repo.count):06d}"
                timed(lambda p=path: client.call("GET", p, headers={"Accept": OCI_MANIFEST}), samples)
        return samples

    def describe_first_page() -> list[float]:
        samples: list[float] = []
        for _ in range(k):
            timed(lambda: ecr.describe_images(repositoryName=repo.name, maxResults=page), samples)
        return samples

    last_page: list[dict[str, Any]] = []

    def list_last_page() -> list[float]:
        # Walk to the last page once a pass, then ask for that page again and again with its nextToken.
        if not last_page:
            last_page.append(_last_page_token(ecr, repo.name, page))
        last = last_page[0]
        samples: list[float] = []
        for _ in range(k):
            timed(lambda: ecr.list_images(repositoryName=repo.name, maxResults=page, **last), samples)
        return samples

    def manifest_put() -> list[float]:
        samples: list[float] = []
        run = uuid.uuid4().hex[:8]
        with Client(target) as client:
            for i in range(k):
                tag, manifest = f"n{run}-{i}", repo.manifest(f"new {run} {i}")
                added.append(timed(lambda t=tag, m=manifest: client.put_manifest(repo.name, t, m), samples))
        return samples

    def put_image() -> list[float]:
        samples: list[float] = []
        run = uuid.uuid4().hex[:8]
        for i in range(k):
            params = {
                "repositoryName": repo.name,
                "imageManifest": repo.manifest(f"put-image {run} {i}").decode(),
                "imageManifestMediaType": OCI_MANIFEST,
                "imageTag": f"p{run}-{i}",
            }
            response = timed(lambda p=params: ecr.put_image(**p), samples)
            added.append(response["image"]["imageId"]["imageDigest"])
        return samples

    def batch_delete() -> list[float]:
        batch = settings.ecr_batch
        wanted = max(settings.growth_deletes, -(-min(P99_CALLS, BLOCKS * k) // BLOCKS))
        calls = max(wanted, -(-len(added) // batch))
        run = uuid.uuid4().hex[:8]
        added.extend(repo.push([f"d{run}-{i}" for i in range(calls * batch - len(added))]))
        samples: list[float] = []
        for start in range(0, len(added), batch):
            ids = [{"imageDigest": digest} for digest in added[start : start + batch]]
            response = timed(lambda i=ids: ecr.batch_delete_image(repositoryName=repo.name, imageIds=i), samples)
            if response.get("failures"):
                raise RuntimeError(f"BatchDeleteImage failed: {response['failures'][:3]}")
        added.clear()
        return samples

    operations = [
        Operation("manifest-get", "manifest GET by tag", manifest_get),
        Operation("describe-images", f"DescribeImages, first page of {page}", describe_first_page),
        Operation("list-images", f"ListImages, last page of {page} (reached with nextToken)", list_last_page),
        Operation("manifest-put", "manifest PUT of a new image", manifest_put),
        Operation("put-image", "PutImage of a new image", put_image),
        Operation("batch-delete", f"BatchDeleteImage of {settings.ecr_batch} digests", batch_delete),
    ]
    if target.gc_args is not None:
        gc_args = target.gc_args
        operations.append(
            Operation(
                "gc", "`dockyard gc --dry-run --grace 0`, whole command", lambda: [_gc_seconds(gc_args)], single=True
            )
        )
    return operations


def _last_page_token(ecr: Any, name: str, page: int) -> dict[str, Any]:
    """The ListImages parameters that ask for the repository's last page: walked to, page by page."""
    last: dict[str, Any] = {}
    while True:
        response = ecr.list_images(repositoryName=name, maxResults=page, **last)
        token = response.get("nextToken")
        if not token:
            return last
        last = {"nextToken": token}


def _gc_seconds(gc_args: list[str]) -> float:
    command = [*dockyard_command(), "gc", "--dry-run", "--grace", "0", *gc_args]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"dockyard gc failed ({result.returncode}): {result.stderr[-2000:]}")
    return elapsed


class GrowingAccount:
    """The account's repositories, filled up to a count with repositories of their own prefix."""

    def __init__(self, settings: Settings, target: Target) -> None:
        self.settings, self.ecr = settings, target.ecr
        self.next = 0

    def count(self) -> int:
        total, params = 0, {"maxResults": 1000}
        while True:
            response = self.ecr.describe_repositories(**params)
            total += len(response["repositories"])
            if not response.get("nextToken"):
                return total
            params = {"maxResults": 1000, "nextToken": response["nextToken"]}

    def seed_to(self, size: int) -> int:
        """Creates repositories until the account holds `size`; returns how many it holds."""
        have = self.count()
        missing = max(0, size - have)
        names = [f"{REPOSITORY_PREFIX}{i:06d}" for i in range(self.next, self.next + missing)]
        self.next += missing
        clients = max(1, min(self.settings.growth_seed_clients, len(names)))

        def create(part: list[str]) -> None:
            for name in part:
                self.ecr.create_repository(repositoryName=name)

        with ThreadPoolExecutor(clients) as pool:
            for future in [pool.submit(create, names[i::clients]) for i in range(clients)]:
                future.result()
        say(f"growth: the account holds {have + missing:,} repositories")
        return have + missing


def _repository_operations(settings: Settings, target: Target) -> list[Operation]:
    """CreateRepository (each new repository deleted again, untimed, so the count holds) and
    DescribeRepositories' first page."""
    ecr, k, page = target.ecr, settings.growth_samples, settings.ecr_page

    def create() -> list[float]:
        samples: list[float] = []
        names = [f"bench-growth/new-{uuid.uuid4().hex[:12]}" for _ in range(k)]
        for name in names:
            timed(lambda n=name: ecr.create_repository(repositoryName=n), samples)
        for name in names:
            ecr.delete_repository(repositoryName=name, force=True)
        return samples

    def describe() -> list[float]:
        samples: list[float] = []
        for _ in range(k):
            timed(lambda: ecr.describe_repositories(maxResults=page), samples)
        return samples

    return [
        Operation("create-repository", "CreateRepository", create),
        Operation("describe-repositories", f"DescribeRepositories, first page of {page}", describe),
    ]


def _key(operation: Operation, where: str) -> str:
    return f"growth-{operation.key}-{where.replace(',', '').replace(' ', '-')}"


def _record(results: Results, target: Target, operation: Operation, where: str, samples: list[float]) -> None:
    key = _key(operation, where)
    if operation.single:
        figure = Figure(key, f"{operation.label}, {where}", "s", False, goal="info")
        results.add(figure, target.name, statistics.median(samples))
        return
    for name, value in zip(("p50", "p99"), percentiles(samples), strict=True):
        figure = Figure(f"{key}-{name}", f"{operation.label}, {where}, {name}", "ms", False, goal="info")
        results.add(figure, target.name, value)


def _ratios(
    results: Results, target: Target, operations: list[Operation], wheres: list[str], versus: str | None = None
) -> None:
    """Largest size over smallest, per operation, from the medians over passes (`versus` names
    the smallest in the figure's label instead of "at <smallest>")."""
    if len(wheres) < 2:
        return
    small, large = wheres[0], wheres[-1]
    for operation in operations:
        stems = [""] if operation.single else ["-p50", "-p99"]
        for stem in stems:
            keys = [_key(operation, where) + stem for where in (small, large)]
            low, high = (results.median(key, target.name) for key in keys)
            if not low or high is None:
                continue
            what = "time" if operation.single else stem.lstrip("-")
            figure = Figure(
                f"growth-{operation.key}-ratio{stem}-{_key(operation, small)}",
                f"{operation.label}, {what} at {large} / {versus or 'at ' + small}",
                "×",
                False,
                goal="bound",
                bound=RATIO_BOUND,
            )
            results.add(figure, target.name, high / low)


def growth(settings: Settings, target: Target, results: Results) -> None:
    if target.ecr is None:
        results.note(f"{LABEL}: not run against the {target.name} registry, which has no ECR API.")
        return
    if settings.prepared.get("growth-done"):
        return  # once per run: the passes at each size are its rounds
    settings.prepared["growth-done"] = True
    if target.gc_args is None:
        results.note(f"{LABEL}: `dockyard gc` not timed: where {target.url} keeps its data was not given.")

    sizes = sorted(set(settings.growth_images))
    repo, control = GrowingRepository(settings, target), GrowingRepository(settings, target, CONTROL_REPO)
    control.seed_to(sizes[0])
    control_where = f"the {sizes[0]:,}-image repository measured alongside"
    image_ops: list[Operation] = []
    image_wheres: list[str] = []
    for size in sizes:
        repo.seed_to(size)
        where = f"{size:,} images"
        image_wheres.append(where)
        for number in range(settings.rounds):
            say(f"growth: pass {number + 1}/{settings.rounds} at {where}")
            image_ops = _image_operations(repo, settings, target)
            control_ops = [op for op in _image_operations(control, settings, target) if not op.single]
            groups = [(image_ops, where), (control_ops, f"{control_where} at {where}")]
            _measure_pass(results, target, groups)
    _ratios(results, target, image_ops, image_wheres)
    if len(sizes) > 1:
        largest = image_wheres[-1]
        alongside = [f"{control_where} at {largest}", largest]
        _ratios(results, target, [op for op in image_ops if not op.single], alongside, versus=control_where)

    account = GrowingAccount(settings, target)
    repo_ops = _repository_operations(settings, target)
    repo_wheres: list[str] = []
    for size in sorted(set(settings.growth_repositories)):
        where = f"{account.seed_to(size):,} repositories"
        repo_wheres.append(where)
        for number in range(settings.rounds):
            say(f"growth: pass {number + 1}/{settings.rounds} at {where}")
            _measure_pass(results, target, [(repo_ops, where)])
    _ratios(results, target, repo_ops, repo_wheres)


def _measure_pass(results: Results, target: Target, groups: list[tuple[list[Operation], str]]) -> None:
    """One pass at one size: BLOCKS blocks of every operation in turn, each block taking the groups
    (the growing repository's operations, and the control's) in turn, first one first, then the
    other (see the module docstring)."""
    samples: dict[tuple[int, str], list[float]] = {}
    for block in range(BLOCKS):
        order = list(enumerate(groups))
        for at, (operations, _) in order if block % 2 == 0 else reversed(order):
            for operation in operations:
                samples.setdefault((at, operation.key), []).extend(operation.measure())
    for at, (operations, where) in enumerate(groups):
        for operation in operations:
            _record(results, target, operation, where, samples[(at, operation.key)])
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    results.note(f"{LABEL}: load average (1, 5, 15 min) after a pass at {groups[0][1]}: {load}")


SCENARIOS: dict[str, Callable[[Settings, Target, Results], None]] = {"growth": growth}
