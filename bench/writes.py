"""The write path: whole small images pushed the way docker and podman push them, and manifest PUTs,
by many clients at once; images or requests per second and p99 latency."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.registry import OCI_MANIFEST, Client, digest_of, image_manifest
from bench.results import Figure, Results
from bench.settings import MIB, Settings, percentiles, run_clients
from bench.targets import Target

PUSH_REPO = "bench/pushes"
PUT_REPO = "bench/manifest-puts"
STAMP = 16  # bytes of fresh randomness at the head of each layer: every layer is new to the registry


@dataclass(frozen=True)
class SmallImage:
    """One image ready to push: its layer's stamp and digest, its config and its manifest."""

    stamp: bytes
    layer_digest: str
    config: bytes
    config_digest: str
    manifest: bytes


class ImageMaker:
    """One client's layer buffer of random bytes. Each image stamps a fresh prefix into it; the
    hashing happens when the image is made, before the clock starts, as docker hashes before it
    pushes."""

    def __init__(self, layer_size: int) -> None:
        self.layer = bytearray(os.urandom(layer_size))

    def make(self, note: str) -> SmallImage:
        stamp = os.urandom(STAMP)
        self.layer[:STAMP] = stamp
        layer_digest = digest_of(self.layer)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"bench": note}},
                "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            },
            separators=(",", ":"),
        ).encode()
        config_digest = digest_of(config)
        manifest = image_manifest(config_digest, len(config), [(layer_digest, len(self.layer))])
        return SmallImage(stamp, layer_digest, config, config_digest, manifest)

    def layer_of(self, image: SmallImage) -> memoryview:
        self.layer[:STAMP] = image.stamp
        return memoryview(self.layer)


def push_image(client: Client, repo: str, tag: str, maker: ImageMaker, image: SmallImage) -> None:
    """What docker and podman do for each blob: HEAD it, and when it is missing POST an upload and
    PUT the body with the digest; then PUT the manifest by tag."""
    for data, digest in ((maker.layer_of(image), image.layer_digest), (image.config, image.config_digest)):
        if not client.blob_exists(repo, digest):
            client.push_monolithic(repo, data, digest)
    client.put_manifest(repo, tag, image.manifest)


def _next_run(settings: Settings, target: Target, scenario: str) -> str:
    """A prefix unique to this run, scenario, registry and round, for tags."""
    key = f"{target.name}-{scenario}-runs"
    count = settings.prepared[key] = settings.prepared.get(key, 0) + 1
    return f"{settings.run_id}-{count}"


def _push_images(settings: Settings, target: Target, clients: int, prefix: str) -> tuple[list[float], float]:
    """`clients` clients, each pushing push_images whole images; (seconds per image, elapsed)."""

    def client_run(index: int, ready: Callable[[], None]) -> list[float]:
        maker = ImageMaker(settings.push_layer_size)
        images = [maker.make(f"{prefix}-{index}-{i}") for i in range(settings.push_images)]
        samples: list[float] = []
        with Client(target) as client:
            ready()
            for i, image in enumerate(images):
                tag = f"{prefix}-c{clients}-{index}-{i}"
                start = time.perf_counter()
                push_image(client, PUSH_REPO, tag, maker, image)
                samples.append(time.perf_counter() - start)
        return samples

    return run_clients(clients, client_run)


def pushes(settings: Settings, target: Target, results: Results) -> None:
    """Small images (1 MiB random layer, config, manifest) pushed whole by 1 client and by
    push_clients clients: images/s and p99 seconds per image at each, and how much more the many
    clients get done than the one."""
    target.create_repository(PUSH_REPO)
    prefix = _next_run(settings, target, "pushes")
    size = settings.push_layer_size
    layer = f"{size // MIB} MiB" if size % MIB == 0 else f"{size // 1024} KiB"
    what = f"Small image push ({layer} random layer + config + manifest)"
    rates: dict[int, float] = {}
    for clients in sorted({1, settings.push_clients}):
        samples, elapsed = _push_images(settings, target, clients, prefix)
        rates[clients] = len(samples) / elapsed
        _, p99_ms = percentiles(samples)
        noun = "client" if clients == 1 else "clients"
        results.add(
            Figure(f"image-push-{clients}", f"{what}, {clients} {noun}", "images/s", True), target.name, rates[clients]
        )
        results.add(
            Figure(f"image-push-{clients}-p99", f"Small image push p99 per image, {clients} {noun}", "s", False),
            target.name,
            p99_ms / 1000,
        )
    if settings.push_clients != 1:
        many = settings.push_clients
        figure = Figure(
            "image-push-scaling",
            f"Small image push scales with clients: images/s at {many} clients / at 1 client",
            "×",
            True,
            goal="bound",
            bound=1.0,
        )
        results.add(figure, target.name, rates[many] / rates[1])


def manifest_puts(settings: Settings, target: Target, results: Results) -> None:
    """put_clients clients each PUTting put_manifests fresh manifests (new tags, blobs already
    pushed): requests/s, p50 and p99."""
    target.create_repository(PUT_REPO)
    key = f"{target.name}-manifest-put-blobs"
    if key not in settings.prepared:
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        layer = b"manifest put layer\n" * 100
        with Client(target) as client:
            config_digest = client.ensure_blob(PUT_REPO, config)
            layer_digest = client.ensure_blob(PUT_REPO, layer)
        settings.prepared[key] = (config_digest, len(config), layer_digest, len(layer))
    config_digest, config_size, layer_digest, layer_size = settings.prepared[key]
    prefix = _next_run(settings, target, "manifest-puts")

    def client_run(index: int, ready: Callable[[], None]) -> list[float]:
        manifests = [
            image_manifest(config_digest, config_size, [(layer_digest, layer_size)], f"{prefix} {index} {i}")
            for i in range(settings.put_manifests)
        ]
        samples: list[float] = []
        with Client(target) as client:
            ready()
            for i, manifest in enumerate(manifests):
                start = time.perf_counter()
                client.put_manifest(PUT_REPO, f"{prefix}-{index}-{i}", manifest, OCI_MANIFEST)
                samples.append(time.perf_counter() - start)
        return samples

    clients = settings.put_clients
    samples, elapsed = run_clients(clients, client_run)
    p50, p99 = percentiles(samples)
    what = f"Manifest PUT (new image, blobs present), {clients} clients"
    results.add(Figure("manifest-put-rps", what, "req/s", True), target.name, len(samples) / elapsed)
    results.add(Figure("manifest-put-p50", "Manifest PUT p50 latency", "ms", False, goal="info"), target.name, p50)
    results.add(Figure("manifest-put-p99", "Manifest PUT p99 latency", "ms", False), target.name, p99)


SCENARIOS: dict[str, Callable[[Settings, Target, Results], None]] = {
    "pushes": pushes,
    "manifest-puts": manifest_puts,
}
