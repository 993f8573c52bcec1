"""The registries under test: Dockyard (with its real ECR auth) and the CNCF reference registry.

Either started here on loopback, in data directories on the same disk, or reached at a URL given on
the command line."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

HOST = "127.0.0.1"
REGION = "us-east-1"
START_TIMEOUT = 60.0
REFERENCE_BINARY = "docker-registry"
# The ECR and growth scenarios need more than ECR's default 1000 images per repository (up to
# 100,000 in one repository) and 1000 repositories per account (10,000).
BENCH_IMAGES_PER_REPOSITORY = 200_000
BENCH_REPOSITORIES_PER_ACCOUNT = 100_000
# Enough pooled connections for the clients that seed repositories at once.
ECR_POOL_CONNECTIONS = 64


class TargetError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Target:
    """One registry: where it is, how to authenticate, and (when started here) its process."""

    name: str
    url: str
    authorization: str | None = None
    ecr: Any = None  # a botocore ECR client, for Dockyard
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    # Where `dockyard gc` finds this Dockyard's data (e.g. ["--data-dir", DIR]); None: unknown.
    gc_args: list[str] | None = None
    # The access key a person signs in to Dockyard's console with (bench/console.py).
    console_key: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rstrip("/")

    @property
    def creds(self) -> str | None:
        """user:password for skopeo, or None for an anonymous registry."""
        return f"AWS:{self.password}" if self.password else None

    def headers(self) -> dict[str, str]:
        return {"Authorization": self.authorization} if self.authorization else {}

    def create_repository(self, name: str) -> None:
        """Dockyard needs repositories created first, as ECR does; the reference creates them on push."""
        if self.ecr is None:
            return
        with contextlib.suppress(self.ecr.exceptions.RepositoryAlreadyExistsException):
            self.ecr.create_repository(repositoryName=name)

    def rss(self) -> int:
        """Resident bytes of the server and every process it started (workers)."""
        return self._memory("rss")

    def pss(self) -> int:
        """Proportional set size of the server and its workers: a page shared by k processes counts
        1/k in each, so the sum counts it once. RSS counts it in every process: the workers share
        the interpreter, the libraries and what the supervisor had before it forked them."""
        return self._memory("pss")

    def _memory(self, kind: str) -> int:
        if self.process is None:
            raise TargetError(f"{self.name} was not started here; its memory cannot be read")
        root = psutil.Process(self.process.pid)
        total = 0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                info = proc.memory_full_info() if kind == "pss" else proc.memory_info()
                total += getattr(info, kind)
        return total

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server and its workers have used so far, or None when it
        was not started here. Unlike wall-clock figures, this cost barely moves when other work
        shares the machine."""
        if self.process is None:
            return None
        root = psutil.Process(self.process.pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def ecr_client(url: str, key_id: str, secret: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "ecr",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(max_pool_connections=ECR_POOL_CONNECTIONS),
    )


def dockyard_target(url: str, key_id: str, secret: str, region: str = REGION) -> Target:
    """A running Dockyard, authenticated as a real client would: GetAuthorizationToken, then Basic."""
    ecr = ecr_client(url, key_id, secret, region)
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    return Target(
        "dockyard", url.rstrip("/"), f"Basic {token}", ecr=ecr, password=password, console_key=(key_id, secret)
    )


def reference_target(url: str, user: str | None = None, password: str | None = None) -> Target:
    authorization = None
    if user is not None and password is not None:
        authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return Target("reference", url.rstrip("/"), authorization)


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TargetError(f"{url} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # answering at all is enough (401 on /v2/ without credentials)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise TargetError(f"{url} did not answer within {START_TIMEOUT:.0f}s:\n{log.read_text()[-4000:]}")


def _random_key() -> tuple[str, str]:
    upper = string.ascii_uppercase + "234567"
    key_id = "AKIA" + "".join(secrets.choice(upper) for _ in range(16))
    secret = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
    return key_id, secret


def start_dockyard(work: Path, workers: int, extra_args: list[str]) -> Target:
    """`dockyard serve` with its defaults (durable writes, auth on), plus raised image and repository limits."""
    port = free_port()
    data = work / "dockyard"
    data.mkdir(parents=True, exist_ok=True)
    key_id, secret = _random_key()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOTO_"))}
    env |= {"DOCKYARD_ROOT_ACCESS_KEY_ID": key_id, "DOCKYARD_ROOT_SECRET_ACCESS_KEY": secret}
    command = [
        sys.executable,
        "-m",
        "bench.dockyard_serve",
        str(BENCH_IMAGES_PER_REPOSITORY),
        str(BENCH_REPOSITORIES_PER_ACCOUNT),
        "--host",
        HOST,
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        # Nothing here scrapes metrics, and a default metrics port could be taken on a shared host.
        "--metrics-address",
        "off",
        # The benchmark measures the registry offline, not a download of the vulnerability data.
        "--vulndb-update-interval",
        "0",
        *extra_args,
    ]
    log = work / "dockyard.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
        )
    url = f"http://{HOST}:{port}"
    _wait_until_up(process, f"{url}/healthz", log)
    target = dockyard_target(url, key_id, secret)
    target.process = process
    target.gc_args = ["--data-dir", str(data)]
    return target


REFERENCE_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
http:
  addr: {host}:{port}
"""


def start_reference(work: Path) -> Target:
    """Debian's docker-registry (CNCF distribution 2.8): filesystem storage, no authentication."""
    binary = shutil.which(REFERENCE_BINARY)
    if binary is None:
        raise TargetError(f"{REFERENCE_BINARY} is not installed (apt-get install docker-registry)")
    port = free_port()
    root = work / "reference"
    root.mkdir(parents=True, exist_ok=True)
    config = work / "reference.yml"
    config.write_text(REFERENCE_CONFIG.format(root=root, host=HOST, port=port))
    log = work / "reference.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    url = f"http://{HOST}:{port}"
    _wait_until_up(process, f"{url}/v2/", log)
    target = reference_target(url)
    target.process = process
    return target


def reference_version() -> str:
    binary = shutil.which(REFERENCE_BINARY)
    if binary is None:
        return "not installed"
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or result.stderr.strip()
