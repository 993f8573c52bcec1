"""The pull through cache, side by side: skopeo pulls one many-layer image straight from an
upstream registry (Debian's docker-registry, started here), then through Dockyard's cache, on
the first pull (fetched from the upstream while it is served) and once it is cached; seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable

from bench.images import OciImage, build_image
from bench.results import Figure, Results
from bench.settings import GIB, MIB, Settings
from bench.targets import Target, start_reference

LABEL = "pull-through"
# How long the cache may take to store the image after its first pull (its layers are stored as
# they stream; the image is recorded once the last one is in).
STORE_LIMIT = 300.0


def _label(size: int) -> str:
    if size >= GIB:
        return f"{size / GIB:.1f} GiB"
    return f"{size / MIB:.0f} MiB" if size >= MIB else f"{size // 1024} KiB"


def _env(settings: Settings) -> dict[str, str]:
    home = settings.work / "pull-through-skopeo"
    home.mkdir(exist_ok=True)
    (home / "auth.json").write_text('{"auths": {}}')
    (home / "registries.conf").write_text("")
    return os.environ | {
        "REGISTRY_AUTH_FILE": str(home / "auth.json"),
        "CONTAINERS_REGISTRIES_CONF": str(home / "registries.conf"),
    }


def _copy(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        ["skopeo", "--insecure-policy", "copy", *args], capture_output=True, text=True, env=env, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy failed: {result.stderr[-2000:]}")
    return elapsed


def _pull(source: str, creds: str | None, settings: Settings, env: dict[str, str]) -> float:
    out = settings.work / "pull-through-pulled"
    shutil.rmtree(out, ignore_errors=True)
    auth = ["--src-creds", creds] if creds else ["--src-no-creds"]
    try:
        return _copy(["--src-tls-verify=false", *auth, source, f"dir:{out}"], env)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _wait_until_stored(target: Target, repository: str) -> None:
    ecr = target.ecr
    deadline = time.monotonic() + STORE_LIMIT
    while time.monotonic() < deadline:
        try:
            if ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": "latest"}])["imageDetails"]:
                return
        except ecr.exceptions.ImageNotFoundException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{repository}:latest was not stored within {STORE_LIMIT:.0f}s of its first pull")


def pull_through(settings: Settings, target: Target, results: Results) -> None:
    if target.ecr is None:
        results.note(f"{LABEL}: not run against the {target.name} registry, which has no pull through cache.")
        return
    image: OciImage | None = settings.prepared.get("skopeo-image")
    if image is None:
        image = build_image(settings.work / "skopeo-image", settings.skopeo_layers, settings.skopeo_layer_size)
        settings.prepared["skopeo-image"] = image
    count = settings.prepared[f"{target.name}-pull-through"] = (
        settings.prepared.get(f"{target.name}-pull-through", 0) + 1
    )
    upstream = start_reference(settings.work / f"pull-through-upstream-{count}")
    prefix = f"ptc{settings.run_id}{count}"
    env = _env(settings)
    try:
        name = f"bench/pull-through-{count}"
        _copy(["--dest-tls-verify=false", "--dest-no-creds", image.ref, f"docker://{upstream.host}/{name}:latest"], env)
        target.ecr.create_pull_through_cache_rule(
            # A well-known upstream that needs no secret, pointed at the local registry (plain HTTP).
            ecrRepositoryPrefix=prefix,
            upstreamRegistryUrl=upstream.url,
            upstreamRegistry="quay",
        )
        direct = _pull(f"docker://{upstream.host}/{name}:latest", None, settings, env)
        cached = f"docker://{target.host}/{prefix}/{name}:latest"
        first = _pull(cached, target.creds, settings, env)
        _wait_until_stored(target, f"{prefix}/{name}")
        again = _pull(cached, target.creds, settings, env)
        target.ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)
    finally:
        upstream.stop()
    what = f"a {image.layers}-layer image ({_label(image.size)})"
    results.add(
        Figure("pull-through-direct", f"skopeo pull of {what} from the upstream, directly", "s", False, goal="info"),
        target.name,
        direct,
    )
    results.add(
        Figure("pull-through-first", f"skopeo pull of {what} through the cache, first pull", "s", False, goal="info"),
        target.name,
        first,
    )
    results.add(
        Figure("pull-through-cached", f"skopeo pull of {what} through the cache, cached", "s", False, goal="info"),
        target.name,
        again,
    )


SCENARIOS: dict[str, Callable[[Settings, Target, Results], None]] = {"pull-through": pull_through}
