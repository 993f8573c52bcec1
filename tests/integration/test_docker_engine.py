"""The docker engine itself (Debian's docker.io: dockerd with vfs, no network, its own socket) against
Dockyard: `docker login` with the AWS CLI's get-login-password, an image built FROM scratch and one
imported from a tarball, push, pull back after rmi, and a manifest list made and pushed with
`docker manifest`; what docker pushed is what ECR describes, digest for digest."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import AwsCli, ContainersConfig
from tests.support.docker_engine import DockerCli, DockerEngine
from tests.support.server import DockyardServer, ServerFactory

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
PUSHED = re.compile(r"^(?P<tag>\S+): digest: (?P<digest>sha256:[0-9a-f]{64}) size: (?P<size>\d+)$", re.MULTILINE)


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    engine = DockerEngine(tmp_path_factory.mktemp("docker-engine")).start()
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, containers_config: ContainersConfig) -> Iterator[DockyardServer]:
    factory = ServerFactory(tmp_path_factory.mktemp("docker-servers"), on_started=[containers_config.trust_server])
    yield factory(args=["--workers", "2"])
    factory.close()


@pytest.fixture(scope="module")
def aws_cli(server: DockyardServer) -> AwsCli:
    return AwsCli(server)


@pytest.fixture(scope="module")
def docker(
    docker_engine: DockerEngine, server: DockyardServer, aws_cli: AwsCli, tmp_path_factory: pytest.TempPathFactory
) -> DockerCli:
    """The docker CLI, logged in to the module's server as the user guide does it."""
    client = docker_engine.client(tmp_path_factory.mktemp("docker-config"))
    password = aws_cli("ecr", "get-login-password")
    assert "Login Succeeded" in client.login(server.registry, password).stdout
    return client


def create_repository(aws_cli: AwsCli, name: str) -> str:
    return aws_cli("ecr", "create-repository", "--repository-name", name)["repository"]["repositoryUri"]


def build_from_scratch(docker: DockerCli, context: Path, tag: str, files: dict[str, bytes]) -> str:
    """`docker build` of a FROM scratch image holding `files`; returns its image id."""
    context.mkdir(parents=True)
    lines = ["FROM scratch"]
    for name, data in files.items():
        (context / name).write_bytes(data)
        lines.append(f"COPY {name} /{name}")
    lines.append('LABEL org.opencontainers.image.title="dockyard docker engine test"')
    (context / "Dockerfile").write_text("\n".join(lines) + "\n")
    docker("build", "--network", "none", "--tag", tag, str(context))
    return image_id(docker, tag)


def import_tarball(docker: DockerCli, path: Path, tag: str, files: dict[str, bytes]) -> str:
    """`docker import` of a root filesystem tarball holding `files`; returns its image id."""
    with tarfile.open(path, "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    docker("import", "--change", "LABEL origin=import", str(path), tag)
    return image_id(docker, tag)


def image_id(docker: DockerCli, ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def push(docker: DockerCli, ref: str) -> str:
    """`docker push`; returns the manifest digest docker reports."""
    pushed = PUSHED.search(docker("push", ref).stdout)
    assert pushed, f"no digest in docker push's output for {ref}"
    assert pushed["tag"] == ref.rsplit(":", 1)[1]
    return pushed["digest"]


def describe(aws_cli: AwsCli, repository: str, tag: str) -> dict[str, Any]:
    args = ["ecr", "describe-images", "--repository-name", repository, "--image-ids", f"imageTag={tag}"]
    (detail,) = aws_cli(*args)["imageDetails"]
    return detail


def manifest_of(aws_cli: AwsCli, repository: str, digest: str, media_type: str) -> bytes:
    """The manifest ECR serves for `digest` (BatchGetImage), checked against the digest."""
    args = ["ecr", "batch-get-image", "--repository-name", repository, "--image-ids", f"imageDigest={digest}"]
    result = aws_cli(*args, "--accepted-media-types", media_type)
    assert result["failures"] == []
    (image,) = result["images"]
    assert image["imageManifestMediaType"] == media_type
    data = image["imageManifest"].encode()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def file_in_image(docker: DockerCli, ref: str, path: str, scratch: Path) -> bytes:
    """A file of an image's filesystem, read through a created (never started) container."""
    container = docker("create", ref, "/none").stdout.strip()
    try:
        out = scratch / f"copied-{container[:12]}"
        docker("cp", f"{container}:{path}", str(out))
        return out.read_bytes()
    finally:
        docker("rm", container)


def test_engine_answers(docker_engine: DockerEngine, docker: DockerCli) -> None:
    info = json.loads(docker("info", "--format", "{{json .}}").stdout)
    assert info["Driver"] == "vfs"
    assert info["DockerRootDir"] == str(docker_engine.root / "data")
    assert "127.0.0.0/8" in info["RegistryConfig"]["InsecureRegistryCIDRs"]


def test_build_push_pull(docker: DockerCli, aws_cli: AwsCli, server: DockyardServer, tmp_path: Path) -> None:
    uri = create_repository(aws_cli, "engine/hello")
    content = b"hello from docker build\n"
    ref = f"{uri}:v1"
    built = build_from_scratch(docker, tmp_path / "context", ref, {"hello.txt": content})

    digest = push(docker, ref)

    detail = describe(aws_cli, "engine/hello", "v1")
    assert detail["imageDigest"] == digest
    assert detail["imageTags"] == ["v1"]
    assert detail["imageManifestMediaType"] == DOCKER_MANIFEST
    assert detail["artifactMediaType"] == DOCKER_CONFIG
    manifest = json.loads(manifest_of(aws_cli, "engine/hello", digest, DOCKER_MANIFEST))
    # The image id docker computed is its config's digest: the config ECR has is the one docker built.
    assert manifest["config"]["digest"] == built
    assert len(manifest["layers"]) == 1
    assert detail["imageSizeInBytes"] == manifest["layers"][0]["size"]  # ECR counts the (compressed) layers

    docker("rmi", ref)
    assert docker("image", "inspect", ref, check=False).returncode != 0
    pulled = docker("pull", ref).stdout
    assert f"Digest: {digest}" in pulled
    assert image_id(docker, ref) == built
    repo_digests = json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout)
    assert f"{uri}@{digest}" in repo_digests
    assert file_in_image(docker, ref, "/hello.txt", tmp_path) == content


def test_manifest_list(docker: DockerCli, aws_cli: AwsCli, tmp_path: Path) -> None:
    uri = create_repository(aws_cli, "engine/multi")
    amd64_ref, arm64_ref, list_ref = f"{uri}:amd64", f"{uri}:arm64", f"{uri}:multi"
    amd64_id = build_from_scratch(docker, tmp_path / "context", amd64_ref, {"arch.txt": b"amd64\n"})
    import_tarball(docker, tmp_path / "rootfs.tar", arm64_ref, {"arch.txt": b"arm64\n"})
    amd64_digest, arm64_digest = push(docker, amd64_ref), push(docker, arm64_ref)

    docker("manifest", "create", "--insecure", list_ref, amd64_ref, arm64_ref)
    # The imported image says amd64 (docker import sets no other platform without experimental mode).
    docker("manifest", "annotate", "--os", "linux", "--arch", "arm64", "--variant", "v8", list_ref, arm64_ref)
    pushed = docker("manifest", "push", "--insecure", "--purge", list_ref).stdout
    (list_digest,) = re.findall(r"sha256:[0-9a-f]{64}", pushed)

    detail = describe(aws_cli, "engine/multi", "multi")
    assert detail["imageDigest"] == list_digest
    assert detail["imageManifestMediaType"] == DOCKER_LIST
    listed = json.loads(manifest_of(aws_cli, "engine/multi", list_digest, DOCKER_LIST))
    assert listed["mediaType"] == DOCKER_LIST
    assert {(m["digest"], m["mediaType"], m["platform"]["architecture"]) for m in listed["manifests"]} == {
        (amd64_digest, DOCKER_MANIFEST, "amd64"),
        (arm64_digest, DOCKER_MANIFEST, "arm64"),
    }
    inspected = json.loads(docker("manifest", "inspect", "--insecure", list_ref).stdout)
    assert inspected["manifests"] == listed["manifests"]
    assert describe(aws_cli, "engine/multi", "amd64")["imageDigest"] == amd64_digest
    assert describe(aws_cli, "engine/multi", "arm64")["imageDigest"] == arm64_digest

    # This engine runs on amd64: pulling the list gives the amd64 image, under the list's digest.
    docker("rmi", amd64_ref, arm64_ref)
    pulled = docker("pull", list_ref).stdout
    assert f"Digest: {list_digest}" in pulled
    assert image_id(docker, list_ref) == amd64_id
    assert file_in_image(docker, list_ref, "/arch.txt", tmp_path) == b"amd64\n"
