"""What a server trusts its host with: its port (a second server on it must not start), its data
directory (private to the server's user), its metrics (a private listener, bounded labels), and
its error counts (a client hanging up is not a server error)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.ops_support import metric, metrics
from tests.support.clients import Boto3Clients
from tests.support.registry_http import RegistryHttp, digest_of
from tests.support.server import DockyardServer, ServerFactory, clean_environ, dockyard_command, free_port

WORKERS = ["--workers", "2"]
POLL_TIMEOUT = 60.0
# A second server that (wrongly) starts is given this long to exit before the test calls it running.
REFUSAL_TIMEOUT = 60.0


def poll(condition: Any, what: str, timeout: float = POLL_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def second_serve(first: DockyardServer, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`dockyard serve` on its own data directory with `args`; kills it (and its workers) if it is
    still running after REFUSAL_TIMEOUT, which the caller sees as a None return code."""
    offline = ["--vulndb-update-interval", "0"]  # a fresh server would fetch osv.dev's data at once
    command = [*dockyard_command(), "serve", "--data-dir", str(work / "data"), *offline, *WORKERS, *args]
    work.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=first.server_env(),
        cwd=work,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=REFUSAL_TIMEOUT)
        return subprocess.CompletedProcess(command, process.returncode, out, err)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        return subprocess.CompletedProcess(command, None, out, err)  # type: ignore[arg-type]


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_a_second_server_on_a_busy_port_refuses_to_start(
    dockyard_server_factory: ServerFactory, tmp_path: Path, server: str
) -> None:
    first = dockyard_server_factory(args=[*WORKERS, "--server", server])
    ecr = Boto3Clients(first)("ecr")
    ecr.create_repository(repositoryName="only-on-the-first")

    same_port = second_serve(
        first,
        tmp_path / "second",
        *("--server", server, "--port", str(first.port), "--metrics-address", f"127.0.0.1:{free_port()}"),
    )
    assert same_port.returncode not in (None, 0), f"started on a busy port:\n{same_port.stderr[-3000:]}"
    assert "address already in use" in same_port.stderr.lower()

    same_metrics = second_serve(
        first,
        tmp_path / "third",
        *("--server", server, "--port", str(free_port()), "--metrics-address", f"127.0.0.1:{first.metrics_port}"),
    )
    assert same_metrics.returncode not in (None, 0), f"started on a busy port:\n{same_metrics.stderr[-3000:]}"
    assert "address already in use" in same_metrics.stderr.lower()

    # Every connection still reaches the first server and its data directory.
    for _ in range(20):
        names = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
        assert names == ["only-on-the-first"]
    assert first.running
    assert requests.get(first.metrics_url, timeout=10).status_code == 200


def modes(root: Path) -> dict[str, int]:
    """Permission bits of `root` and everything under it, by path relative to `root`."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory, name)
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def not_private(root: Path) -> dict[str, str]:
    """Every entry whose mode is not 0700 (directories) or 0600 (files)."""
    wrong = {}
    for name, mode in modes(root).items():
        wanted = 0o700 if (root / name).is_dir() else 0o600
        if mode != wanted:
            wrong[name] = oct(mode)
    return wrong


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """The test's processes (and the servers they start) under `mask`."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def visible_dir() -> Iterator[Path]:
    """A directory every local user may enter (pytest's own are the owner's only): whatever is
    private about a data directory made in it is the server's doing."""
    path = Path(tempfile.mkdtemp(prefix="dockyard-trust-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)


def push_a_blob(server: DockyardServer) -> str:
    Boto3Clients(server)("ecr").create_repository(repositoryName="private-blobs")
    return RegistryHttp.for_server(server).push_blob("private-blobs", os.urandom(4096))


def test_a_new_data_directory_is_private_whatever_the_umask(
    dockyard_server_factory: ServerFactory, visible_dir: Path
) -> None:
    data = visible_dir / "data"
    with umask(0o022):
        server = dockyard_server_factory(args=WORKERS, data_dir=data)
    digest = push_a_blob(server)
    assert any(digest.split(":")[1] in name for name in modes(data)), "the blob is in the data directory"
    assert (data / "metadata.db").exists() and (data / "credentials").exists()
    assert not_private(data) == {}
    # The workers' memory-mapped metrics are not on the data directory's disk (a full disk faults them).
    assert not [name for name in modes(data) if name.endswith(".db") and "metadata" not in name]

    # Another local user can read none of it: not the secret keys, not the blobs.
    as_nobody = subprocess.run(
        ["runuser", "-u", "nobody", "--", "cat", str(data / "metadata.db")], capture_output=True, text=True
    )
    assert as_nobody.returncode != 0 and "Permission denied" in as_nobody.stderr
    listing = subprocess.run(["runuser", "-u", "nobody", "--", "ls", str(data)], capture_output=True, text=True)
    assert listing.returncode != 0


def test_an_older_data_directory_is_made_private_at_start(
    dockyard_server_factory: ServerFactory, visible_dir: Path
) -> None:
    data = visible_dir / "data"
    server = dockyard_server_factory(args=WORKERS, data_dir=data)
    push_a_blob(server)
    server.stop()
    # What an older version left under umask 022.
    for name in modes(data):
        path = data / name
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert not_private(data) != {}

    with umask(0o022):
        server.start()
    assert not_private(data) == {}
    # So are offline commands that open a data directory.
    (data / "metadata.db").chmod(0o644)
    server.stop()
    listed = subprocess.run(
        [*dockyard_command(), "admin", "--data-dir", str(data), "list-accounts"],
        env=clean_environ(),
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr
    assert not_private(data) == {}


def test_metrics_are_served_on_the_metrics_address_only(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory(args=WORKERS)
    Boto3Clients(server)("ecr").create_repository(repositoryName="secret-project-name")

    public = requests.get(f"{server.url}/metrics", timeout=10)
    assert public.status_code == 404
    assert "secret-project-name" not in public.text

    # A request is counted once its response is finished, which the client may see first.
    deadline = time.monotonic() + 60
    while True:
        samples = metrics(server)
        counted = metric(samples, "dockyard_requests_total", door="ecr", operation="CreateRepository", status="200")
        if counted or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert counted == 1
    assert metric(samples, "dockyard_repository_storage_bytes", repository="secret-project-name") == 0
    assert ("dockyard_repository_storage_bytes", frozenset()) not in samples
    assert requests.get(server.metrics_url.replace("/metrics", "/other"), timeout=10).status_code == 404


def made_up_call(server: DockyardServer, target: str) -> int:
    """An unauthenticated ECR call to an operation nobody has heard of."""
    answer = requests.post(
        f"{server.url}/",
        headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
        data=b"{}",
        timeout=10,
    )
    return answer.status_code


def test_made_up_operations_add_no_label_series(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory(args=WORKERS)
    prefix = "AmazonEC2ContainerRegistry_V20150921."
    # One made-up call first: the "unknown" operation's series exist from then on.
    status = made_up_call(server, prefix + "MadeUpFirst")
    before = poll(
        lambda: (found := metrics(server)) and metric(found, "dockyard_requests_total", door="ecr") == 1 and found,
        "the first made-up call to be counted",
    )
    names = [f"MadeUp{uuid.uuid4().hex[:12]}" for _ in range(6)]
    for name in names:
        assert made_up_call(server, prefix + name) == status
        assert made_up_call(server, name) == status
    after = poll(
        lambda: (found := metrics(server)) and metric(found, "dockyard_requests_total", door="ecr") == 13 and found,
        "the made-up calls to be counted",
    )
    assert set(after) == set(before), f"new series: {sorted(set(after) - set(before), key=str)[:10]}"
    labels = {value for _, have in after for _, value in have}
    assert not any(name in value for name in [*names, "MadeUpFirst"] for value in labels)
    assert metric(after, "dockyard_requests_total", door="ecr", operation="unknown") == 13


@pytest.mark.parametrize("server_name", ["granian", "uvicorn"])
def test_a_client_hanging_up_mid_upload_is_an_abort_not_a_server_error(
    dockyard_server_factory: ServerFactory, server_name: str
) -> None:
    server = dockyard_server_factory(args=[*WORKERS, "--server", server_name])
    Boto3Clients(server)("ecr").create_repository(repositoryName="hang-up")
    http = RegistryHttp.for_server(server)
    started = http.request("POST", "/v2/hang-up/blobs/uploads/")
    assert started.status_code == 202
    location = started.headers["Location"]
    path = location.removeprefix(server.url)
    auth = requests.Request("PATCH", server.url, auth=("AWS", http.password)).prepare().headers["Authorization"]

    declared = 8 * 1024 * 1024
    with socket.create_connection((server.host, server.port), timeout=10) as conn:
        conn.sendall(
            f"PATCH {path} HTTP/1.1\r\nHost: {server.hostport}\r\nAuthorization: {auth}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n".encode()
        )
        conn.sendall(os.urandom(256 * 1024))
        # Hang up only once the server is in the middle of receiving the upload.
        poll(lambda: metric(metrics(server), "dockyard_uploads_in_progress") >= 1, "the upload to be under way")

    def counted() -> dict[Any, float] | None:
        found = metrics(server)
        return found if metric(found, "dockyard_requests_total", operation="UploadLayerPart") >= 1 else None

    samples = poll(counted, "the hung-up upload to be counted")
    assert metric(samples, "dockyard_requests_total", operation="UploadLayerPart", status="499") == 1
    assert metric(samples, "dockyard_requests_total", status="500") == 0
    # The server keeps working, and its log has no error and no traceback for the hang-up.
    assert http.push_blob("hang-up", b"after the hang-up") == digest_of(b"after the hang-up")
    log = server.stderr()
    assert "Traceback" not in log
    assert '"level":"error"' not in log
    assert any('"status":499' in line and "UploadLayerPart" in line for line in log.splitlines())
