"""Replication to another Dockyard site: two Dockyard servers started here as two sites (the
second serving us-west-2, the first replicating there over the network with
--replication-site), a 100 MiB image pushed with skopeo to the first; seconds from the push
acknowledged (skopeo's manifest PUT answered) to the image pullable at the second (its manifest
served there, which the site accepts only once every blob is in). Fresh sites every round, so
no layer is already at the destination."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench.images import OciImage, build_image
from bench.results import Figure, Results
from bench.settings import MIB, Settings
from bench.targets import (
    BENCH_IMAGES_PER_REPOSITORY,
    BENCH_REPOSITORIES_PER_ACCOUNT,
    HOST,
    Target,
    _random_key,
    _wait_until_up,
    dockyard_target,
    free_port,
)

LABEL = "replication"
SITE_REGION = "us-west-2"
SITE_WORKERS = 2
LAYERS, LAYER_SIZE = 4, 25 * MIB
REPOSITORY = "bench/replicated"
# How long the copy may take before the round is given up.
REPLICATION_LIMIT = 600.0
POLL_SECONDS = 0.02


def _start_site(work: Path, key: tuple[str, str], region: str, extra_args: list[str]) -> Target:
    """`dockyard serve` as targets.start_dockyard runs it, serving `region`, with a known root key."""
    port = free_port()
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOTO_"))}
    env |= {"DOCKYARD_ROOT_ACCESS_KEY_ID": key[0], "DOCKYARD_ROOT_SECRET_ACCESS_KEY": key[1]}
    command = [
        sys.executable,
        "-m",
        "bench.dockyard_serve",
        str(BENCH_IMAGES_PER_REPOSITORY),
        str(BENCH_REPOSITORIES_PER_ACCOUNT),
        *("--host", HOST, "--port", str(port), "--data-dir", str(data), "--region", region),
        *("--workers", str(SITE_WORKERS), "--log-level", "warning", "--metrics-address", "off"),
        *("--vulndb-update-interval", "0"),
        *extra_args,
    ]
    log = work / "dockyard.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
        )
    url = f"http://{HOST}:{port}"
    _wait_until_up(process, f"{url}/healthz", log)
    target = dockyard_target(url, key[0], key[1], region)
    target.process = process
    return target


def _skopeo_env(work: Path) -> dict[str, str]:
    home = work / "skopeo"
    home.mkdir(parents=True, exist_ok=True)
    (home / "auth.json").write_text('{"auths": {}}')
    (home / "registries.conf").write_text("")
    return os.environ | {
        "REGISTRY_AUTH_FILE": str(home / "auth.json"),
        "CONTAINERS_REGISTRIES_CONF": str(home / "registries.conf"),
    }


def _push(image: OciImage, source: Target, env: dict[str, str]) -> float:
    """skopeo copy to the source; the moment (perf_counter) the push was acknowledged."""
    assert source.creds is not None
    result = subprocess.run(
        [
            *("skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false"),
            *("--dest-creds", source.creds, image.ref, f"docker://{source.host}/{REPOSITORY}:latest"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    acknowledged = time.perf_counter()
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy failed: {result.stderr[-2000:]}")
    return acknowledged


def _pullable(site: Target, account_id: str) -> bool:
    """Whether the site serves the replica's manifest, asked by its registry host name."""
    request = urllib.request.Request(
        f"{site.url}/v2/{REPOSITORY}/manifests/latest",
        method="HEAD",
        headers=site.headers()
        | {
            "Host": f"{account_id}.dkr.ecr.{SITE_REGION}.amazonaws.com",
            "Accept": "application/vnd.oci.image.manifest.v1+json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


def _one_round(image: OciImage, work: Path) -> tuple[float, float]:
    """(seconds from push acknowledged to pullable at the site, seconds of the push itself)."""
    site_key, source_key = _random_key(), _random_key()
    site = _start_site(work / "site", site_key, SITE_REGION, [])
    source: Target | None = None
    try:
        source = _start_site(
            work / "source",
            source_key,
            "us-east-1",
            [
                *("--replication-site", f"{SITE_REGION}={site.url}"),
                *("--replication-site-credentials", f"{SITE_REGION}={site_key[0]}:{site_key[1]}"),
            ],
        )
        account_id = site.ecr.describe_registry()["registryId"]
        source.ecr.put_replication_configuration(
            replicationConfiguration={"rules": [{"destinations": [{"region": SITE_REGION, "registryId": account_id}]}]}
        )
        source.create_repository(REPOSITORY)
        env = _skopeo_env(work)
        started = time.perf_counter()
        acknowledged = _push(image, source, env)
        deadline = acknowledged + REPLICATION_LIMIT
        while not _pullable(site, account_id):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the image was not pullable at the site {REPLICATION_LIMIT:.0f}s after its push")
            time.sleep(POLL_SECONDS)
        return time.perf_counter() - acknowledged, acknowledged - started
    finally:
        if source is not None:
            source.stop()
        site.stop()


def replication(settings: Settings, target: Target, results: Results) -> None:
    if target.ecr is None:
        results.note(f"{LABEL}: not run against the {target.name} registry, which has no replication.")
        return
    image: OciImage | None = settings.prepared.get("replication-image")
    if image is None:
        image = build_image(settings.work / "replication-image", LAYERS, LAYER_SIZE)
        settings.prepared["replication-image"] = image
    count = settings.prepared["replication-rounds"] = settings.prepared.get("replication-rounds", 0) + 1
    work = settings.work / f"replication-{count}"
    try:
        latency, push = _one_round(image, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    what = f"a {image.size / MIB:.0f} MiB image ({image.layers} layers)"
    results.add(
        Figure(
            "replication-to-site",
            f"{what}: push acknowledged to pullable at another Dockyard site",
            "s",
            False,
            goal="info",
        ),
        target.name,
        latency,
    )
    results.add(
        Figure("replication-push", f"{what}: the skopeo push to the source site itself", "s", False, goal="info"),
        target.name,
        push,
    )


SCENARIOS: dict[str, Callable[[Settings, Target, Results], None]] = {LABEL: replication}
