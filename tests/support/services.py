"""Real PostgreSQL, Redis and S3-compatible servers for the scale-out tests, started by the tests.

- PostgreSQL and Redis are Debian's (scripts/test installs `postgresql` and `redis-server`). A
  private PostgreSQL cluster is made with initdb in a temporary directory and run with pg_ctl on a
  free port; PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres`
  user Debian's package creates.
- The object store is moto's standalone server (`moto[server]` from PyPI): an S3 API with
  multipart uploads and presigned URLs, in-process and in memory. MinIO and Ceph RGW ship no
  Debian or PyPI package reachable from this machine, so they cannot be installed here.

All three listen on 127.0.0.1 only and are stopped when the test session ends. Durability is
switched off (fsync=off, no Redis snapshots): these servers hold throwaway test data."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.server import HOST, free_port

START_TIMEOUT = 30.0
PG_USER = "dockyard"
PG_DATABASE = "dockyard"
# Several Dockyard processes with a connection pool each share one cluster.
PG_MAX_CONNECTIONS = 300


class ServiceError(RuntimeError):
    pass


def _wait_for_port(port: int, process: subprocess.Popen[bytes] | None, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not listen on port {port} within {START_TIMEOUT:.0f}s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else ""


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program: Debian keeps them under /usr/lib/postgresql/<version>/bin."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise ServiceError(f"{name} not found: install Debian's postgresql package (scripts/test does)")


@dataclass
class PostgresCluster:
    """A private cluster: initdb'd in a temporary directory, one database, trust auth on 127.0.0.1."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dockyard-pg-")))
    port: int = 0
    _owner: str | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = PG_DATABASE) -> str:
        return f"postgresql+asyncpg://{PG_USER}@{HOST}:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        command = list(args)
        if self._owner is not None:
            command = ["runuser", "-u", self._owner, "--", *command]
        return subprocess.run(command, capture_output=True, check=False, cwd=self.root)

    def _check(self, *args: str) -> None:
        result = self._run(*args)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(args)} failed:\n{result.stdout.decode()}\n{result.stderr.decode()}")

    def start(self) -> PostgresCluster:
        if os.geteuid() == 0:
            # root cannot run postgres; Debian's package made this account for it.
            self._owner = "postgres"
            entry = pwd.getpwnam(self._owner)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.port = free_port()
        self._check(
            postgres_bin("initdb"), "-D", str(self.data_dir), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        options = (
            f"-p {self.port} -h {HOST} -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off "
            f"-c full_page_writes=off -c max_connections={PG_MAX_CONNECTIONS}"
        )
        self._check(postgres_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log), "-o", options, "-w", "start")
        _wait_for_port(self.port, None, "postgres", self.log)
        self.create_database(PG_DATABASE)
        return self

    def create_database(self, name: str) -> str:
        """A fresh database in this cluster (one per test keeps tests independent); returns its URL."""
        psql = postgres_bin("psql")
        self._check(
            psql, "-h", HOST, "-p", str(self.port), "-U", PG_USER, "-d", "postgres", "-c", f'CREATE DATABASE "{name}"'
        )
        return self.url(name)

    def stop(self) -> None:
        if self.port:
            self._run(postgres_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class RedisServer:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dockyard-redis-")))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server not found: install Debian's redis-server package (scripts/test does)")
        self.port = free_port()
        log = self.root / "redis.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    HOST,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.root),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for_port(self.port, self.process, "redis-server", log)
        return self

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class S3Server:
    """moto's S3 (and friends) as a standalone HTTP server; credentials may be anything."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dockyard-s3-")))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    region: str = "us-east-1"

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        """The variables a Dockyard node reads its object store credentials from (as any AWS SDK)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def start(self) -> S3Server:
        self.port = free_port()
        log = self.root / "moto.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for_port(self.port, self.process, "moto_server", log)
        return self

    def create_bucket(self, name: str) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )
        client.create_bucket(Bucket=name)

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self.root, ignore_errors=True)


# Session-scoped fixtures: a test module imports the ones it uses.


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()
