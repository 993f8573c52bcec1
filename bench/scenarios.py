"""The scenarios. Each takes the run's settings, one registry and the results, and adds figures."""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from bench import console as console_bench
from bench import growth, load, pull_through, replication, writes
from bench.images import OciImage, build_image
from bench.registry import OCI_MANIFEST, Client, digest_of, image_manifest, push_small_image
from bench.results import Figure, Results
from bench.settings import GIB, MIB, Settings, percentiles, timed
from bench.targets import Target

__all__ = ["GIB", "MIB", "SCENARIOS", "Settings"]


def size_label(size: int) -> str:
    if size >= GIB and size % GIB == 0:
        return f"{size // GIB} GiB"
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB} MiB"
    return f"{size // 1024} KiB"


def repetitions(size: int) -> int:
    """Small blobs are pushed many times per round so one figure is not one short request."""
    return max(1, min(32, (256 * MIB) // size))


class BlobData:
    """One buffer of random bytes; each push stamps a fresh prefix so every blob is new to the
    registry (no shortcut for content it already has), hashed before the clock starts."""

    def __init__(self, size: int) -> None:
        self.buffer = bytearray(os.urandom(size))

    def fresh(self, size: int) -> tuple[memoryview, str]:
        view = memoryview(self.buffer)[:size]
        view[:16] = os.urandom(16)
        return view, digest_of(view)


def _blob_data(settings: Settings) -> BlobData:
    wanted = max([*settings.sizes, settings.concurrent_size, settings.memory_size])
    data = settings.prepared.get("blob-data")
    if data is None or len(data.buffer) < wanted:
        data = settings.prepared["blob-data"] = BlobData(wanted)
    return data


def _mib_per_s(total: int, seconds: float) -> float:
    return total / MIB / seconds


def blobs(settings: Settings, target: Target, results: Results) -> None:
    """Push (monolithic, chunked) and pull at each size; MiB/s."""
    repo = "bench/blobs"
    target.create_repository(repo)
    data = _blob_data(settings)
    buffer = bytearray(MIB)
    with Client(target) as client:
        for size in settings.sizes:
            label = size_label(size)
            reps = repetitions(size)
            largest = size == max(settings.sizes)
            for mode in ("monolithic", "chunked"):
                elapsed, cpu = 0.0, target.cpu_seconds()
                for _ in range(reps):
                    view, digest = data.fresh(size)
                    start = time.perf_counter()
                    if mode == "monolithic":
                        client.push_monolithic(repo, view, digest)
                    else:
                        client.push_chunked(repo, view, digest, settings.chunk)
                    elapsed += time.perf_counter() - start
                    settings.prepared[f"{target.name}-blob-{size}"] = digest
                chunked = f" ({size_label(settings.chunk)} chunks)" if mode == "chunked" else ""
                figure = Figure(f"push-{mode}-{size}", f"Blob push, {mode}{chunked}, {label}", "MiB/s", True, "push")
                results.add(figure, target.name, _mib_per_s(size * reps, elapsed))
                if largest:
                    _cpu_per_gib(target, results, f"push-{mode}", f"push, {mode}, {label}", cpu, size * reps)
            digest = settings.prepared[f"{target.name}-blob-{size}"]
            start, cpu = time.perf_counter(), target.cpu_seconds()
            for _ in range(reps):
                if client.pull(repo, digest, buffer) != size:
                    raise RuntimeError(f"pull of {digest} from {target.name} returned the wrong size")
            elapsed = time.perf_counter() - start
            results.add(
                Figure(f"pull-{size}", f"Blob pull, {label}", "MiB/s", True, "pull"),
                target.name,
                _mib_per_s(size * reps, elapsed),
            )
            if largest:
                _cpu_per_gib(target, results, "pull", f"pull, {label}", cpu, size * reps)


def _cpu_per_gib(target: Target, results: Results, key: str, what: str, before: float | None, total: int) -> None:
    """Server CPU seconds per GiB moved: what a transfer costs, whatever else runs on the machine."""
    after = target.cpu_seconds()
    if before is None or after is None:
        return
    figure = Figure(f"{key}-cpu", f"Server CPU per GiB, {what}", "s", False, goal="info")
    results.add(figure, target.name, (after - before) * GIB / total)


def concurrent_pulls(settings: Settings, target: Target, results: Results) -> None:
    """N clients pulling the same blob at once; aggregate MiB/s."""
    repo, size, clients = "bench/blobs", settings.concurrent_size, settings.concurrent_clients
    target.create_repository(repo)
    key = f"{target.name}-concurrent-{size}"
    if key not in settings.prepared:
        view, digest = _blob_data(settings).fresh(size)
        with Client(target) as client:
            client.push_monolithic(repo, view, digest)
        settings.prepared[key] = digest
    digest = settings.prepared[key]
    barrier = threading.Barrier(clients + 1)

    def pull() -> int:
        with Client(target) as client:
            buffer = bytearray(MIB)
            barrier.wait()
            return client.pull(repo, digest, buffer)

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(pull) for _ in range(clients)]
        barrier.wait()
        start = time.perf_counter()
        total = sum(f.result() for f in futures)
        elapsed = time.perf_counter() - start
    if total != size * clients:
        raise RuntimeError(f"concurrent pulls from {target.name} returned {total} bytes, not {size * clients}")
    figure = Figure(
        f"pull-concurrent-{clients}x{size}",
        f"{clients} clients pulling one {size_label(size)} blob (aggregate)",
        "MiB/s",
        True,
        "pull",
    )
    results.add(figure, target.name, _mib_per_s(total, elapsed))


def manifests(settings: Settings, target: Target, results: Results) -> None:
    """Manifest GET and HEAD by tag under load: requests/s, p50 and p99 latency."""
    repo, tag = "bench/manifests", "latest"
    key = f"{target.name}-manifest"
    if key not in settings.prepared:
        target.create_repository(repo)
        with Client(target) as client:
            settings.prepared[key] = push_small_image(client, repo, tag)
    url = f"{target.url}/v2/{repo}/manifests/{tag}"
    headers = target.headers() | {"Accept": OCI_MANIFEST}
    for method in ("GET", "HEAD"):
        cpu_before = target.cpu_seconds()
        result = load.load(url, method, headers, settings.connections, settings.duration, settings.load_threads)
        cpu_after = target.cpu_seconds()
        if result.errors:
            results.note(f"{target.name}: {result.errors} of {result.requests} manifest {method}s failed.")
        name, c = method.lower(), settings.connections
        results.add(
            Figure(f"manifest-{name}-rps", f"Manifest {method} by tag, {c} connections", "req/s", True),
            target.name,
            result.rps,
        )
        results.add(
            Figure(f"manifest-{name}-p50", f"Manifest {method} p50 latency", "ms", False), target.name, result.p50_ms
        )
        results.add(
            Figure(f"manifest-{name}-p99", f"Manifest {method} p99 latency", "ms", False), target.name, result.p99_ms
        )
        if cpu_before is not None and cpu_after is not None and result.requests:
            results.add(
                Figure(f"manifest-{name}-cpu", f"Manifest {method}: server CPU per request", "µs", False),
                target.name,
                1e6 * (cpu_after - cpu_before) / result.requests,
            )
        share = result.cpu_seconds / (result.seconds * (os.cpu_count() or 1))
        results.add(
            Figure(
                f"manifest-{name}-generator",
                f"Manifest {method}: {result.generator}'s share of all CPU",
                "%",
                False,
                goal="info",
            ),
            target.name,
            100 * share,
        )
        results.add(
            Figure(
                f"manifest-{name}-ceiling",
                f"Manifest {method}: {result.generator} ceiling, one core",
                "req/s",
                True,
                goal="info",
            ),
            target.name,
            result.ceiling,
        )


def _skopeo(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        ["skopeo", "--insecure-policy", *args], capture_output=True, text=True, env=env, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args[:2])} failed: {result.stderr[-2000:]}")
    return elapsed


def _skopeo_env(settings: Settings) -> dict[str, str]:
    home = settings.work / "skopeo-home"
    home.mkdir(exist_ok=True)
    (home / "auth.json").write_text('{"auths": {}}')
    (home / "registries.conf").write_text("")
    return os.environ | {
        "REGISTRY_AUTH_FILE": str(home / "auth.json"),
        "CONTAINERS_REGISTRIES_CONF": str(home / "registries.conf"),
    }


def skopeo(settings: Settings, target: Target, results: Results) -> None:
    """A many-layer image pushed and pulled by a real client, end to end; seconds."""
    image: OciImage | None = settings.prepared.get("skopeo-image")
    if image is None:
        image = build_image(settings.work / "skopeo-image", settings.skopeo_layers, settings.skopeo_layer_size)
        settings.prepared["skopeo-image"] = image
    count = settings.prepared[f"{target.name}-skopeo"] = settings.prepared.get(f"{target.name}-skopeo", 0) + 1
    repo = f"bench/skopeo-{settings.run_id}-{count}"
    target.create_repository(repo)
    env = _skopeo_env(settings)
    reference = f"docker://{target.host}/{repo}:latest"
    creds = ["--dest-creds", target.creds] if target.creds else ["--dest-no-creds"]
    pushed = _skopeo(["copy", "--dest-tls-verify=false", *creds, image.ref, reference], env)
    pulled_dir = settings.work / f"skopeo-pull-{target.name}"
    shutil.rmtree(pulled_dir, ignore_errors=True)
    creds = ["--src-creds", target.creds] if target.creds else ["--src-no-creds"]
    pulled = _skopeo(["copy", "--src-tls-verify=false", *creds, reference, f"dir:{pulled_dir}"], env)
    shutil.rmtree(pulled_dir, ignore_errors=True)
    label = f"{image.layers}-layer image ({size_label(image.size)})"
    results.add(Figure("skopeo-push", f"skopeo copy: push a {label}", "s", False), target.name, pushed)
    results.add(Figure("skopeo-pull", f"skopeo copy: pull a {label}", "s", False), target.name, pulled)


def seed_images(settings: Settings, target: Target) -> None:
    """Fill one repository with `images` tagged images sharing one layer (once per registry).
    Not timed: the manifest PUT rate is the manifest-puts scenario's, measured apart."""
    repo = "bench/ecr"
    target.create_repository(repo)
    with Client(target) as client:
        existing = client.call("GET", f"/v2/{repo}/tags/list", expect=(200, 404))
        if existing.status == 200 and len(json.loads(existing.body).get("tags") or []) >= settings.images:
            return
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        layer = b"seed layer\n" * 100
        config_digest = client.ensure_blob(repo, config)
        layer_digest = client.ensure_blob(repo, layer)

    def push(indices: range) -> None:
        with Client(target) as client:
            for i in indices:
                manifest = image_manifest(config_digest, len(config), [(layer_digest, len(layer))], f"image {i}")
                client.put_manifest(repo, f"t{i:05d}", manifest)

    workers = settings.seed_clients
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(push, range(w, settings.images, workers)) for w in range(workers)]:
            future.result()


def ecr_api(settings: Settings, target: Target, results: Results) -> None:
    """DescribeImages, ListImages and BatchGetImage on the seeded repository; latency per call."""
    seed_images(settings, target)
    if target.ecr is None:
        return
    ecr, repo = target.ecr, "bench/ecr"
    from botocore.exceptions import ClientError

    def pages(operation: str, **params: Any) -> list[float]:
        samples: list[float] = []
        token: str | None = None
        while True:
            extra = {"nextToken": token} if token else {}
            method = getattr(ecr, operation)
            page = timed(lambda m=method, e=extra: m(repositoryName=repo, **params, **e), samples)
            token = page.get("nextToken")
            if not token:
                return samples

    def batches() -> list[float]:
        samples: list[float] = []
        rng = random.Random(7)
        for _ in range(max(5, settings.images // settings.ecr_batch // 2)):
            ids = [{"imageTag": f"t{rng.randrange(settings.images):05d}"} for _ in range(settings.ecr_batch)]
            timed(lambda i=ids: ecr.batch_get_image(repositoryName=repo, imageIds=i), samples)
        return samples

    calls: dict[str, Callable[[], list[float]]] = {
        "DescribeImages": lambda: pages("describe_images", maxResults=settings.ecr_page),
        "ListImages": lambda: pages("list_images", maxResults=1000) + pages("list_images", maxResults=1000),
        "BatchGetImage": batches,
    }
    for name, call in calls.items():
        try:
            samples = call()
        except ClientError as exc:
            results.note(f"{target.name}: {name} failed ({exc.response['Error'].get('Code')}); not measured.")
            continue
        p50, p99 = percentiles(samples)
        per = {
            "DescribeImages": f"page of {settings.ecr_page}",
            "ListImages": "page of 1000",
            "BatchGetImage": f"{settings.ecr_batch} images",
        }[name]
        where = f"{settings.images} images"
        results.add(
            Figure(f"ecr-{name}-p50", f"{name} p50 per {per} ({where})", "ms", False, goal="info"), target.name, p50
        )
        bound = 20.0 if name == "DescribeImages" else None
        results.add(
            Figure(
                f"ecr-{name}-p99",
                f"{name} p99 per {per} ({where})",
                "ms",
                False,
                goal="bound" if bound else "info",
                bound=bound,
            ),
            target.name,
            p99,
        )


# The bound on the whole process tree at rest (checked by RSS and by PSS: see Target.pss).
IDLE_MEMORY_BOUND_MIB = 150.0


@contextmanager
def sampling_rss(target: Target, interval: float = 0.02) -> Iterator[list[int]]:
    """Samples the server's resident memory (all its processes) in a thread while the block runs."""
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(target.rss())
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def _idle(reading: Callable[[], int], samples: int = 5, interval: float = 0.1) -> int:
    """The median of a few readings once no request is in flight: one reading can catch a worker
    mid-way through freeing what the previous scenario used."""
    readings = []
    for _ in range(samples):
        time.sleep(interval)
        readings.append(reading())
    return int(statistics.median(readings))


def memory(settings: Settings, target: Target, results: Results) -> None:
    """Peak resident memory over idle while one big blob streams in, then out."""
    if target.process is None:
        results.note(f"{target.name}: not started by the bench, so its memory was not measured.")
        return
    repo, size = "bench/blobs", settings.memory_size
    target.create_repository(repo)
    view, digest = _blob_data(settings).fresh(size)
    idle = _idle(target.rss)
    idle_pss = _idle(target.pss)
    buffer = bytearray(MIB)
    with Client(target) as client:
        with sampling_rss(target) as pushing:
            client.push_monolithic(repo, view, digest)
        with sampling_rss(target) as pulling:
            client.pull(repo, digest, buffer)
    label = size_label(size)
    figure = Figure(
        "rss-idle",
        "Server RSS when idle: sum over all its processes (server and workers)",
        "MiB",
        False,
        goal="bound",
        bound=IDLE_MEMORY_BOUND_MIB,
    )
    results.add(figure, target.name, idle / MIB)
    figure = Figure(
        "pss-idle",
        "Server PSS when idle: sum over all its processes (a page the processes share counted once)",
        "MiB",
        False,
        goal="bound",
        bound=IDLE_MEMORY_BOUND_MIB,
    )
    results.add(figure, target.name, idle_pss / MIB)
    for name, samples in (("push", pushing), ("pull", pulling)):
        figure = Figure(
            f"rss-{name}", f"Peak RSS over idle, {name} of a {label} blob", "MiB", False, goal="bound", bound=50.0
        )
        results.add(figure, target.name, (max(samples, default=idle) - idle) / MIB)


SCENARIOS: dict[str, Callable[[Settings, Target, Results], None]] = {
    "blobs": blobs,
    "concurrent": concurrent_pulls,
    "manifests": manifests,
    "skopeo": skopeo,
    "ecr": ecr_api,
    "memory": memory,
    **writes.SCENARIOS,
    **growth.SCENARIOS,
    **pull_through.SCENARIOS,
    **replication.SCENARIOS,
    **console_bench.SCENARIOS,
}
