"""Run `dockyard serve` as a subprocess for tests that talk to it with real clients."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
START_TIMEOUT = float(os.environ.get("DOCKYARD_TEST_START_TIMEOUT", "30"))
STOP_TIMEOUT = 10.0
# Variables that could point a client at a real account or change how it signs or retries.
_AWS_PREFIXES = ("AWS_", "BOTO_")


class ServerStartError(RuntimeError):
    pass


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def access_key_id() -> str:
    """An AKIA-style key id: AKIA plus 16 upper-case letters and digits (20 characters)."""
    alphabet = string.ascii_uppercase + "234567"
    return "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))


def secret_access_key() -> str:
    alphabet = string.ascii_letters + string.digits + "+/"
    return "".join(secrets.choice(alphabet) for _ in range(40))


def dockyard_command() -> list[str]:
    """The installed `dockyard` script, preferring the one beside this interpreter (a venv's)."""
    beside = Path(sys.executable).parent / "dockyard"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dockyard")
    if found:
        return [found]
    raise ServerStartError("the dockyard command is not installed: run `pip install -e '.[test]'`")


def clean_environ() -> dict[str, str]:
    """This process's environment without anything that configures AWS clients."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_AWS_PREFIXES)}


@dataclass
class DockyardServer:
    """One `dockyard serve` process. Start it with start(); stop(), kill() and start() again to restart
    it on the same port and data directory (crash and restart tests)."""

    data_dir: Path
    work_dir: Path
    port: int = 0
    host: str = HOST
    account_id: str = DEFAULT_ACCOUNT_ID
    region: str = DEFAULT_REGION
    access_key_id: str = field(default_factory=access_key_id)
    secret_access_key: str = field(default_factory=secret_access_key, repr=False)
    registry_host: str | None = None
    # "https" when the server is started with --tls-cert/--tls-key.
    scheme: str = "http"
    extra_args: Sequence[str] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # Called after every successful start, e.g. to trust this registry in the containers config.
    on_started: Sequence[Callable[[DockyardServer], None]] = field(default=(), repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0
    # The private Prometheus listener (--metrics-address); a fresh free port at every start.
    metrics_port: int = 0

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Where /metrics answers: the metrics listener, not the public port."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def registry(self) -> str:
        """The host:port clients push to and pull from (what repositoryUri starts with)."""
        return self.registry_host or self.hostport

    @property
    def stdout_path(self) -> Path:
        return self.work_dir / f"stdout.{self.starts}.log"

    @property
    def stderr_path(self) -> Path:
        return self.work_dir / f"stderr.{self.starts}.log"

    @property
    def aws_config_file(self) -> Path:
        return self.work_dir / "aws-config"

    @property
    def aws_credentials_file(self) -> Path:
        return self.work_dir / "aws-credentials"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def command(self) -> list[str]:
        args = [
            *dockyard_command(),
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--account-id",
            self.account_id,
            "--region",
            self.region,
        ]
        if self.registry_host:
            args += ["--registry-host", self.registry_host]
        chosen = "DOCKYARD_METRICS_ADDRESS" in self.extra_env or any(
            arg.startswith("--metrics-address") for arg in self.extra_args
        )
        if not chosen:
            args += ["--metrics-address", f"{self.host}:{self.metrics_port}"]
        # Offline unless a test asks: a fresh server would otherwise fetch osv.dev's data at once.
        if not any(arg.startswith("--vulndb-update-interval") for arg in self.extra_args):
            args += ["--vulndb-update-interval", "0"]
        return [*args, *self.extra_args]

    def server_env(self) -> dict[str, str]:
        return {
            **clean_environ(),
            "DOCKYARD_ROOT_ACCESS_KEY_ID": self.access_key_id,
            "DOCKYARD_ROOT_SECRET_ACCESS_KEY": self.secret_access_key,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def env(self, **overrides: str) -> dict[str, str]:
        """A full environment for AWS clients run as subprocesses: this server's root key and region,
        and empty config files so nothing from the host (profiles, endpoints, metadata) leaks in."""
        self._write_empty_aws_files()
        return {
            **clean_environ(),
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_CONFIG_FILE": str(self.aws_config_file),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.aws_credentials_file),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
            **overrides,
        }

    def _write_empty_aws_files(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.aws_config_file, self.aws_credentials_file):
            if not path.exists():
                path.write_text("")

    def start(self, timeout: float = START_TIMEOUT) -> DockyardServer:
        """Start the process and wait for /healthz; on a port race, retry on a fresh port."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fixed_port = self.port != 0
        for _ in range(3):
            if not fixed_port:
                self.port = free_port(self.host)
            self.metrics_port = free_port(self.host)
            if self._start_once(timeout):
                for hook in self.on_started:
                    hook(self)
                return self
            # A taken metrics port is worth another try even when the public port is fixed.
            in_use = "address already in use" in self.stderr().lower()
            if not in_use or (fixed_port and f":{self.port}:" in self.stderr()):
                break
        raise ServerStartError(self._failure("exited before answering /healthz"))

    def _start_once(self, timeout: float) -> bool:
        """True once /healthz answers; False if the process exited first."""
        self.starts += 1
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.server_env(),
                cwd=self.work_dir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self.healthy():
                return True
            time.sleep(0.05)
        self.kill()
        raise ServerStartError(self._failure(f"did not answer /healthz within {timeout:.0f}s"))

    def healthy(self) -> bool:
        try:
            context = ssl._create_unverified_context() if self.scheme == "https" else None
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1, context=context) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _failure(self, what: str) -> str:
        code = self.process.returncode if self.process else None
        return (
            f"dockyard server {what} (exit code {code})\n"
            f"command: {' '.join(self.command())}\n"
            f"stderr ({self.stderr_path}):\n{self.stderr()[-8000:]}"
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`. Returns the exit code."""
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL at once: a crash, as far as the data directory can tell."""
        return self._signal(signal.SIGKILL, STOP_TIMEOUT)

    def _signal(self, sig: signal.Signals, timeout: float) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reap_group()
        return self.process.returncode

    def _reap_group(self) -> None:
        # The server may have started workers of its own; they share its process group.
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def restart(self, timeout: float = START_TIMEOUT) -> DockyardServer:
        self.stop()
        return self.start(timeout)


@dataclass
class ServerFactory:
    """Starts DockyardServers under `root` and stops every one it started at close()."""

    root: Path
    on_started: list[Callable[[DockyardServer], None]] = field(default_factory=list)
    servers: list[DockyardServer] = field(default_factory=list)

    def __call__(
        self,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
        region: str = DEFAULT_REGION,
        registry_host: str | None = None,
        port: int = 0,
        start: bool = True,
        access_key: tuple[str, str] | None = None,
    ) -> DockyardServer:
        """`access_key`: the root key (id, secret) to start with, e.g. one several nodes of a
        cluster share; a fresh one otherwise."""
        work_dir = self.root / f"server-{len(self.servers)}"
        keys = {"access_key_id": access_key[0], "secret_access_key": access_key[1]} if access_key else {}
        server = DockyardServer(
            data_dir=data_dir or work_dir / "data",
            work_dir=work_dir,
            port=port,
            account_id=account_id,
            region=region,
            registry_host=registry_host,
            extra_args=tuple(args),
            extra_env=dict(env or {}),
            on_started=self.on_started,
            **keys,
        )
        self.servers.append(server)
        if start:
            server.start()
        return server

    def close(self) -> None:
        for server in self.servers:
            server.stop()
