"""Real clients bound to a test server: the AWS CLI, boto3, podman and skopeo, each isolated from the
host's own configuration (credentials, registries, image storage, logins)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.session

from tests.support.images import BuiltImage, BuiltIndex
from tests.support.server import DockyardServer, clean_environ

COMMAND_TIMEOUT = 300.0
# podman as root in a container without systemd: cgroupfs and a plain events file, and vfs storage,
# which needs neither overlay mounts nor fuse.
PODMAN_ENGINE = ("--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file")


class ToolMissing(RuntimeError):
    pass


def find_tool(name: str) -> str:
    """A client binary, preferring the one beside this interpreter (pip installs `aws` into a venv)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise ToolMissing(f"`{name}` is not installed: run scripts/test, which installs what the tests need")


class CommandError(AssertionError):
    """A client command failed; the message carries everything needed to see why."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        super().__init__(
            f"command failed with exit code {result.returncode}: {' '.join(result.args)}\n"
            f"stdout:\n{_text(result.stdout)[-4000:]}\nstderr:\n{_text(result.stderr)[-4000:]}"
        )


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


@dataclass(frozen=True)
class CommandResult:
    args: list[str]
    returncode: int
    stdout: Any  # str, or bytes when run with text=False
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def check(self) -> CommandResult:
        if self.returncode != 0:
            raise CommandError(self)
        return self


def run(
    args: list[str],
    *,
    env: Mapping[str, str],
    input: str | bytes | None = None,
    text: bool = True,
    timeout: float = COMMAND_TIMEOUT,
) -> CommandResult:
    if text and isinstance(input, bytes):
        input = input.decode()
    elif not text and isinstance(input, str):
        input = input.encode()
    done = subprocess.run(
        args,
        input=input,
        capture_output=True,
        env=dict(env),
        timeout=timeout,
        text=text,
        # Without input, close stdin so nothing can wait for a prompt.
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    stderr = done.stderr if text else done.stderr.decode(errors="replace")
    return CommandResult(args, done.returncode, done.stdout, stderr)


@dataclass
class AwsCli:
    """The real AWS CLI pointed at a Dockyard server.

    `aws("ecr", "create-repository", "--repository-name", "ubuntu")` returns the parsed JSON output,
    the plain text for commands that print text (`get-login-password`), or None for no output; it
    raises CommandError on failure. With check=False it returns the CommandResult whatever happens.
    """

    server: DockyardServer
    binary: str = field(default_factory=lambda: find_tool("aws"))

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        server: DockyardServer | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> Any:
        target = server or self.server
        command = [self.binary, *args, "--endpoint-url", target.url, "--output", "json"]
        result = run(command, env=target.env(**(env or {})), input=input, timeout=timeout)
        if not check:
            return result
        result.check()
        return parse_output(result.stdout)


def parse_output(stdout: str) -> Any:
    text = stdout.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@dataclass
class Boto3Clients:
    """boto3 clients bound to a server: `boto3_client("ecr")`; keyword arguments override the
    endpoint, keys, region or botocore config. Retries are off unless a config asks for them."""

    server: DockyardServer

    def __call__(self, service: str, *, server: DockyardServer | None = None, **kw: Any) -> Any:
        target = server or self.server
        config = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"})
        if "config" in kw:
            config = config.merge(kw.pop("config"))
        options: dict[str, Any] = {
            "endpoint_url": target.url,
            "aws_access_key_id": target.access_key_id,
            "aws_secret_access_key": target.secret_access_key,
            "region_name": target.region,
            "config": config,
            **kw,
        }
        return isolated_boto3_session(target).client(service, **options)


def isolated_boto3_session(server: DockyardServer) -> boto3.session.Session:
    """A session that reads no profile, config or credentials file of the host's."""
    env = server.env()
    core = botocore.session.Session()
    core.set_config_variable("config_file", env["AWS_CONFIG_FILE"])
    core.set_config_variable("credentials_file", env["AWS_SHARED_CREDENTIALS_FILE"])
    core.set_config_variable("profile", None)
    return boto3.session.Session(botocore_session=core)


@dataclass
class ContainersConfig:
    """Configuration files and storage for podman and skopeo, all under `root`, none of the host's."""

    root: Path
    insecure: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for path in (self.graphroot, self.runroot, self.libpod_tmpdir, self.tmpdir):
            path.mkdir(parents=True, exist_ok=True)
        self.policy_path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.containers_conf.write_text(
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
            f'events_logfile_path = "{self.root / "events.log"}"\n'
        )
        self.storage_conf.write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{self.graphroot}"\nrunroot = "{self.runroot}"\n'
        )
        if not self.authfile.exists():
            self.authfile.write_text(json.dumps({"auths": {}}))
        self._write_registries()

    @property
    def graphroot(self) -> Path:
        """Podman's image storage (vfs)."""
        return self.root / "storage"

    @property
    def runroot(self) -> Path:
        return self.root / "run"

    @property
    def libpod_tmpdir(self) -> Path:
        """Podman's --tmpdir: its state files (locks, events), not ours."""
        return self.root / "libpod-tmp"

    @property
    def tmpdir(self) -> Path:
        """TMPDIR for the tools: big temporary files during copies."""
        return self.root / "tmp"

    @property
    def authfile(self) -> Path:
        return self.root / "auth.json"

    @property
    def policy_path(self) -> Path:
        return self.root / "policy.json"

    @property
    def registries_conf(self) -> Path:
        return self.root / "registries.conf"

    @property
    def containers_conf(self) -> Path:
        return self.root / "containers.conf"

    @property
    def storage_conf(self) -> Path:
        return self.root / "storage.conf"

    def add_insecure(self, *registries: str) -> None:
        """Let podman and skopeo use plain HTTP to these host:port registries."""
        for registry in registries:
            if registry not in self.insecure:
                self.insecure.append(registry)
        self._write_registries()

    def trust_server(self, server: DockyardServer) -> None:
        self.add_insecure(server.hostport, server.registry)

    def _write_registries(self) -> None:
        # No search registries and no short-name resolution: nothing may reach out to a public registry.
        lines = ["unqualified-search-registries = []", 'short-name-mode = "disabled"', ""]
        for registry in self.insecure:
            lines += ["[[registry]]", f'location = "{registry}"', "insecure = true", ""]
        self.registries_conf.write_text("\n".join(lines))

    def env(self) -> dict[str, str]:
        return {
            **clean_environ(),
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
            "CONTAINERS_CONF": str(self.containers_conf),
            "CONTAINERS_STORAGE_CONF": str(self.storage_conf),
            "REGISTRY_AUTH_FILE": str(self.authfile),
            "TMPDIR": str(self.tmpdir),
        }

    def logout_all(self) -> None:
        self.authfile.write_text(json.dumps({"auths": {}}))


def _ref(image: BuiltImage | BuiltIndex | str) -> str:
    return image if isinstance(image, str) else image.ref


@dataclass
class Podman:
    """podman with its own storage (vfs), registries.conf and auth file: `podman("images")`."""

    config: ContainersConfig
    binary: str = field(default_factory=lambda: find_tool("podman"))

    @property
    def base_args(self) -> list[str]:
        return [
            self.binary,
            "--root",
            str(self.config.graphroot),
            "--runroot",
            str(self.config.runroot),
            "--tmpdir",
            str(self.config.libpod_tmpdir),
            *PODMAN_ENGINE,
        ]

    def __call__(
        self,
        *args: str,
        input: str | bytes | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> CommandResult:
        result = run(
            [*self.base_args, *args],
            env={**self.config.env(), **(env or {})},
            input=input,
            timeout=timeout,
        )
        return result.check() if check else result

    def login(self, registry: str, password: str, username: str = "AWS", check: bool = True) -> CommandResult:
        args = ["login", "--username", username, "--password-stdin", registry]
        return self(*args, input=password, check=check)

    def load(self, image: BuiltImage | BuiltIndex | str, name: str | None = None, *args: str) -> str:
        """Pull a built image from its layout into storage, optionally tag it `name`; returns its ID."""
        image_id = self("pull", "--quiet", *args, _ref(image)).stdout.strip().splitlines()[-1]
        if name:
            self("tag", image_id, name)
        return image_id

    def push(self, name: str, *args: str, check: bool = True) -> str | CommandResult:
        """`podman push NAME`; returns the pushed manifest's digest (or the result, with check=False)."""
        with tempfile.TemporaryDirectory(dir=self.config.tmpdir) as scratch:
            digest_file = Path(scratch) / "digest"
            result = self("push", "--digestfile", str(digest_file), *args, name, check=check)
            return digest_file.read_text().strip() if result.returncode == 0 else result

    def inspect(self, name: str) -> dict[str, Any]:
        return self("image", "inspect", name).json()[0]

    def exists(self, name: str) -> bool:
        return self("image", "exists", name, check=False).returncode == 0


def tls_args(source: str | None = None, destination: str | None = None) -> list[str]:
    """skopeo's flags for plain HTTP, for whichever side of a copy is a registry (`docker://`)."""
    args = []
    if source and source.startswith("docker://"):
        args.append("--src-tls-verify=false")
    if destination and destination.startswith("docker://"):
        args.append("--dest-tls-verify=false")
    return args


@dataclass
class Skopeo:
    """skopeo with its own policy, registries.conf and auth file; registry sides use plain HTTP."""

    config: ContainersConfig
    binary: str = field(default_factory=lambda: find_tool("skopeo"))

    def __call__(
        self,
        *args: str,
        input: str | bytes | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        text: bool = True,
        timeout: float = COMMAND_TIMEOUT,
    ) -> CommandResult:
        isolation = ["--policy", str(self.config.policy_path), "--tmpdir", str(self.config.tmpdir)]
        result = run(
            [self.binary, *isolation, *args],
            env={**self.config.env(), **(env or {})},
            input=input,
            text=text,
            timeout=timeout,
        )
        return result.check() if check else result

    def copy(
        self, source: BuiltImage | BuiltIndex | str, destination: str, *args: str, check: bool = True
    ) -> CommandResult:
        src = _ref(source)
        flags = ["--authfile", str(self.config.authfile), *tls_args(src, destination)]
        pushing_built = not isinstance(source, str) and destination.startswith("docker://")
        if pushing_built and not any(arg.startswith(("--format", "-f")) for arg in args):
            # A built image goes up byte for byte: without this, skopeo's blob-info cache may swap in a
            # layer another client already pushed with the same content, and rewrite the manifest.
            flags.append("--preserve-digests")
        return self("copy", "--quiet", *flags, *args, src, destination, check=check)

    def inspect(self, ref: BuiltImage | BuiltIndex | str, *args: str, check: bool = True) -> CommandResult:
        return self("inspect", *self._registry_flags(_ref(ref)), *args, _ref(ref), check=check)

    def inspect_raw(self, ref: BuiltImage | BuiltIndex | str, *args: str) -> bytes:
        """The manifest exactly as served: the bytes its digest is computed over."""
        target = _ref(ref)
        return self("inspect", "--raw", *self._registry_flags(target), *args, target, text=False).stdout

    def delete(self, ref: str, *args: str, check: bool = True) -> CommandResult:
        return self("delete", *self._registry_flags(ref), *args, ref, check=check)

    def list_tags(self, ref: str, *args: str) -> list[str]:
        return self("list-tags", *self._registry_flags(ref), *args, ref).json()["Tags"]

    def login(self, registry: str, password: str, username: str = "AWS", check: bool = True) -> CommandResult:
        return self(
            "login",
            "--tls-verify=false",
            "--authfile",
            str(self.config.authfile),
            "--username",
            username,
            "--password-stdin",
            registry,
            input=password,
            check=check,
        )

    def _registry_flags(self, ref: str) -> list[str]:
        if not ref.startswith("docker://"):
            return []
        return ["--tls-verify=false", "--authfile", str(self.config.authfile)]
