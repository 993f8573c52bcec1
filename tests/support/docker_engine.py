"""A private docker engine for tests: Debian's `dockerd` (docker.io) run as root with the vfs
storage driver, no iptables and no bridge (containers get no network), on its own socket, data root
and exec root, so it shares nothing with a docker the host may run.

`DockerEngine(root).start()` waits (bounded) until the daemon answers `docker info`;
`engine.client(config_dir)` is the docker CLI bound to it with its own config (logins);
`engine.stop()` ends the daemon and everything it started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.clients import COMMAND_TIMEOUT, CommandResult, find_tool, run
from tests.support.server import clean_environ

START_TIMEOUT = float(os.environ.get("DOCKYARD_TEST_DOCKERD_START_TIMEOUT", "120"))
STOP_TIMEOUT = 30.0
LOG_TAIL = 6000
# Every loopback registry, whatever port a test server takes, is plain HTTP.
LOOPBACK = "127.0.0.0/8"


class DockerEngineError(RuntimeError):
    pass


@dataclass
class DockerEngine:
    """One dockerd. Its data root lives under `root`; its exec root and socket under a short
    directory of /tmp of its own (unix socket paths are limited to 108 bytes)."""

    root: Path
    insecure_registries: Sequence[str] = (LOOPBACK,)
    dockerd: str = field(default_factory=lambda: find_tool("dockerd"))
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    run_dir: Path | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def socket(self) -> Path:
        assert self.run_dir is not None, "the engine has not been started"
        return self.run_dir / "docker.sock"

    @property
    def host(self) -> str:
        """DOCKER_HOST for clients of this engine."""
        return f"unix://{self.socket}"

    @property
    def cli(self) -> str:
        """The docker CLI shipped with this dockerd (Debian's), not another one on PATH."""
        beside = Path(self.dockerd).with_name("docker")
        return str(beside) if beside.exists() else find_tool("docker")

    def command(self) -> list[str]:
        assert self.run_dir is not None
        args = [
            self.dockerd,
            "--storage-driver",
            "vfs",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--data-root",
            str(self.root / "data"),
            "--exec-root",
            str(self.run_dir / "exec"),
            "--pidfile",
            str(self.run_dir / "dockerd.pid"),
            "--host",
            self.host,
        ]
        for registry in self.insecure_registries:
            args += ["--insecure-registry", registry]
        return args

    def start(self, timeout: float = START_TIMEOUT) -> DockerEngine:
        if os.geteuid() != 0:
            raise DockerEngineError("dockerd must run as root (scripts/test runs the suite as root)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(tempfile.mkdtemp(prefix="dockerd-", dir="/tmp"))
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_environ(),
                start_new_session=True,
            )
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise DockerEngineError(self._failure(f"exited with code {self.process.returncode}"))
            if self.socket.exists() and self.client(self.root / "probe-config")("info", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise DockerEngineError(self._failure(f"did not answer `docker info` within {timeout:.0f}s"))

    def _failure(self, what: str) -> str:
        return f"dockerd {what}\ncommand: {' '.join(self.command())}\nlog ({self.log_path}):\n{self.log()}"

    def log(self) -> str:
        """The tail of the daemon's log."""
        return self.log_path.read_text(errors="replace")[-LOG_TAIL:] if self.log_path.exists() else ""

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (dockerd stops its containerd), SIGKILL to the whole group if that takes too long."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def client(self, config_dir: Path) -> DockerCli:
        return DockerCli(self, config_dir)


@dataclass
class DockerCli:
    """`docker(...)` against one engine, with its own DOCKER_CONFIG (so logins stay private)."""

    engine: DockerEngine
    config_dir: Path

    def env(self) -> dict[str, str]:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        return {
            **clean_environ(),
            "DOCKER_HOST": self.engine.host,
            "DOCKER_CONFIG": str(self.config_dir),
            # The classic builder: COPY into FROM scratch needs neither BuildKit nor a network.
            "DOCKER_BUILDKIT": "0",
        }

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> CommandResult:
        result = run([self.engine.cli, *args], env={**self.env(), **(env or {})}, input=input, timeout=timeout)
        return result.check() if check else result

    def login(self, registry: str, password: str, username: str = "AWS") -> CommandResult:
        return self("login", "--username", username, "--password-stdin", registry, input=password)
