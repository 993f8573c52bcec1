"""The benchmark harness, run in its quick mode so it cannot rot: every scenario, real servers,
no timing assertions (the figures themselves are for docs/benchmarks.md, not for the suite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.server import ServerFactory, clean_environ

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_writes_a_report(dockyard_server_factory: ServerFactory, tmp_path: Path) -> None:
    server = dockyard_server_factory()
    output = tmp_path / "benchmarks.md"
    targets = "dockyard,reference"
    scenarios = "machine,blobs,concurrent,manifests,ecr,memory,skopeo,pushes,manifest-puts,growth"
    command = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--targets",
        targets,
        "--scenarios",
        scenarios,
        "--dockyard-url",
        server.url,
        "--dockyard-access-key-id",
        server.access_key_id,
        "--dockyard-secret-access-key",
        server.secret_access_key,
        "--dockyard-region",
        server.region,
        # Where the server keeps its data, so the growth scenario can time `dockyard gc` on it.
        "--dockyard-gc-arg=--data-dir",
        f"--dockyard-gc-arg={server.data_dir}",
        "--work-dir",
        str(tmp_path / "work"),
        "--output",
        str(output),
    ]
    env = clean_environ() | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-6000:]

    report = output.read_text()
    assert "## What the machine allows" in report
    for figure in ("Blob push, monolithic, 1 MiB", "Blob pull, 1 MiB", "Manifest GET by tag", "Manifest HEAD by tag"):
        assert figure in report
    write_path = (
        "Small image push (1 MiB random layer + config + manifest), 8 clients",
        "Small image push p99 per image, 8 clients",
        "Small image push scales with clients",
        "Manifest PUT (new image, blobs present), 8 clients",
        "Manifest PUT p99 latency",
    )
    for figure in write_path:
        assert figure in report
    growth = report.split("## Growth: cost per request as the data grows (Dockyard only)", 1)[1]
    for operation in (
        "manifest PUT of a new image",
        "PutImage of a new image",
        "manifest GET by tag",
        "DescribeImages, first page",
        "ListImages, last page",
        "BatchDeleteImage of 10 digests",
        "`dockyard gc --dry-run --grace 0`",
        "CreateRepository",
        "DescribeRepositories, first page",
    ):
        assert f"| {operation}" in growth
    # A ratio row (largest size / smallest, bound 1.5×) for each percentile of each operation, and
    # one for each percentile of each image operation but gc against the control repository
    # measured alongside the largest.
    assert growth.count("≤ 1.5×") == 17 + 12
    assert growth.count("-image repository measured alongside |") == 12
    if "skopeo" in scenarios:
        assert "skopeo copy: push" in report
    if targets.endswith("reference"):
        assert "docker/distribution" in report
