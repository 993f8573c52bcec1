"""The test harness itself, checked without a Dockyard server: built images are valid for the real
tools (skopeo, umoci, podman), the server fixture's process handling works (against a stand-in that
answers /healthz), and the AWS clients are configured for a server and nothing else."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.clients import AwsCli, Boto3Clients, ContainersConfig, Podman, Skopeo, find_tool
from tests.support.images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    build_image,
    build_index,
    layout_tags,
    make_layer,
    read_blob,
)
from tests.support.server import DockyardServer, ServerFactory, ServerStartError


def test_built_image_is_what_skopeo_reads(tmp_path: Path, skopeo: Skopeo) -> None:
    image = build_image(tmp_path / "layout", "v1", [2048, b"hello", {"etc/motd": b"welcome\n"}])

    assert skopeo.inspect_raw(image) == image.manifest.data
    inspected = skopeo.inspect(image).json()
    assert inspected["Digest"] == image.digest
    assert inspected["Architecture"] == "amd64"
    assert inspected["Layers"] == [layer.digest for layer in image.layers]
    config = skopeo("inspect", "--config", image.ref).json()
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in image.layers]
    assert layout_tags(image.layout) == {"v1": image.digest}


def test_skopeo_copies_every_blob_intact(tmp_path: Path, skopeo: Skopeo) -> None:
    image = build_image(tmp_path / "layout", "v1", [4096, 100])
    out = tmp_path / "out"

    skopeo.copy(image, f"dir:{out}")

    assert (out / "manifest.json").read_bytes() == image.manifest.data
    for blob in image.blobs:
        assert hashlib.sha256(read_blob(out, blob.digest)).hexdigest() == blob.digest.removeprefix("sha256:")


def test_tampered_layer_is_rejected(tmp_path: Path, skopeo: Skopeo, podman: Podman) -> None:
    # What the tools do when a registry serves the wrong bytes for a digest.
    image = build_image(tmp_path / "layout", "v1", [512], seed="tampered")
    blob_path = image.layout / "blobs" / "sha256" / image.layers[0].digest.removeprefix("sha256:")
    blob_path.write_bytes(make_layer(512, seed="something else").data)

    copied = skopeo.copy(image, f"dir:{tmp_path / 'out'}", check=False)
    pulled = podman("pull", image.ref, check=False)

    for result in (copied, pulled):
        assert result.returncode != 0
        assert "Digest did not match" in result.stderr


def test_umoci_unpacks_the_files_it_was_given(tmp_path: Path) -> None:
    image = build_image(tmp_path / "layout", "v1", [300, {"etc/motd": b"welcome\n"}])
    bundle = tmp_path / "bundle"

    subprocess.run(
        [find_tool("umoci"), "unpack", "--image", f"{image.layout}:v1", str(bundle)],
        check=True,
        capture_output=True,
    )

    rootfs = bundle / "rootfs"
    assert (rootfs / "etc" / "motd").read_bytes() == b"welcome\n"
    assert (rootfs / "data" / "0.bin").read_bytes() == image.layers[0].files["data/0.bin"]


def test_builds_are_reproducible_and_seeded(tmp_path: Path) -> None:
    first = build_image(tmp_path / "a", "v1", [1000, 2000], seed=7)
    again = build_image(tmp_path / "b", "v1", [1000, 2000], seed=7)
    other = build_image(tmp_path / "c", "v1", [1000, 2000], seed=8)

    assert first.digest == again.digest
    assert first.manifest.data == again.manifest.data
    assert {layer.digest for layer in first.layers}.isdisjoint(layer.digest for layer in other.layers)
    # Tags in one layout coexist, and the default seed (the tag) keeps them distinct.
    build_image(tmp_path / "a", "v2", [1000, 2000])
    tags = layout_tags(tmp_path / "a")
    assert tags["v1"] == first.digest and tags["v2"] != first.digest


def test_multi_platform_index_is_what_skopeo_reads(tmp_path: Path, skopeo: Skopeo) -> None:
    index = build_index(tmp_path / "layout", "multi", [700, 800])

    assert skopeo.inspect_raw(index) == index.index.data
    assert index.index_json["mediaType"] == OCI_INDEX
    platforms = [m["platform"] for m in index.index_json["manifests"]]
    assert platforms == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    arm = index.for_platform("linux/arm64/v8")
    assert arm.media_type == OCI_MANIFEST
    assert skopeo.inspect_raw(f"{index.ref}", "--override-arch", "arm64") == index.index.data
    inspected = skopeo("--override-arch", "arm64", "--override-variant", "v8", "inspect", index.ref).json()
    assert inspected["Digest"] == index.digest and inspected["Layers"] == [lay.digest for lay in arm.layers]

    out = tmp_path / "out"
    skopeo.copy(index, f"dir:{out}", "--all")
    assert (out / "manifest.json").read_bytes() == index.index.data
    for image in index.images:
        instance = out / f"{image.digest.removeprefix('sha256:')}.manifest.json"
        assert instance.read_bytes() == image.manifest.data


def test_docker_schema2_image_and_list(tmp_path: Path, skopeo: Skopeo) -> None:
    image = build_image(tmp_path / "single", "v1", [256], fmt="docker")
    index = build_index(tmp_path / "list", "v1", [256], fmt="docker")

    assert image.ref == f"dir:{tmp_path / 'single'}"
    assert skopeo.inspect_raw(image) == image.manifest.data
    assert image.manifest_json["mediaType"] == DOCKER_MANIFEST
    assert skopeo.inspect(image).json()["Digest"] == image.digest
    assert skopeo.inspect_raw(index) == index.index.data
    assert index.index_json["mediaType"] == DOCKER_LIST

    # Copied into an OCI layout the manifest is converted, so the digest changes; the content stays.
    skopeo.copy(image, f"oci:{tmp_path / 'converted'}:v1")
    converted = json.loads(skopeo.inspect_raw(f"oci:{tmp_path / 'converted'}:v1"))
    assert converted["mediaType"] == OCI_MANIFEST
    assert [layer["digest"] for layer in converted["layers"]] == [layer.digest for layer in image.layers]


def test_podman_loads_built_images_with_vfs(tmp_path: Path, podman: Podman) -> None:
    image = build_image(tmp_path / "layout", "v1", [1024, {"etc/motd": b"hi\n"}], seed="podman-smoke")

    image_id = podman.load(image, "localhost/smoke:v1")

    # podman checks each layer against the config's diff_ids as it stores it; the image ID is the
    # config digest, and the manifest digest is kept.
    assert image_id == image.config.digest.removeprefix("sha256:")
    inspected = podman.inspect("localhost/smoke:v1")
    assert inspected["Digest"] == image.digest
    assert inspected["RootFS"]["Layers"] == [layer.diff_id for layer in image.layers]
    assert podman("info", "--format", "{{.Store.GraphDriverName}}").stdout.strip() == "vfs"

    docker_image = build_image(tmp_path / "docker", "v1", [64], fmt="docker", seed="podman-smoke-docker")
    assert podman.load(docker_image) == docker_image.config.digest.removeprefix("sha256:")

    index = build_index(tmp_path / "layout", "multi", [128], seed="podman-smoke-index")
    arm = index.for_platform("linux/arm64/v8")
    arm_id = podman.load(index, None, "--platform", "linux/arm64/v8")
    assert arm_id == arm.config.digest.removeprefix("sha256:")

    podman("rmi", "--force", image_id)
    assert not podman.exists("localhost/smoke:v1")


def test_containers_config_is_isolated(containers_config: ContainersConfig) -> None:
    containers_config.add_insecure("127.0.0.1:1")
    text = containers_config.registries_conf.read_text()
    assert 'location = "127.0.0.1:1"' in text and "insecure = true" in text
    assert "unqualified-search-registries = []" in text
    env = containers_config.env()
    assert env["REGISTRY_AUTH_FILE"] == str(containers_config.authfile)
    # Logins made by other tests land in this file, never in the host's.
    assert "auths" in json.loads(containers_config.authfile.read_text())


# A stand-in for `dockyard serve`: answers /healthz, reports the root key it was given, and exits on
# SIGTERM; enough to exercise the fixture's start, health wait, restart and teardown.
STAND_IN = """
import http.server, os, signal, sys
args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["DOCKYARD_ROOT_ACCESS_KEY_ID"].encode() if self.path == "/key" else b"ok"
        self.send_response(200 if self.path in ("/healthz", "/key") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("stand-in starting", file=sys.stderr, flush=True)
if "--fail" in args:
    sys.exit("stand-in refusing to start")
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


class StandInServer(DockyardServer):
    def command(self) -> list[str]:
        script = self.work_dir / "stand_in.py"
        script.write_text(STAND_IN)
        return [sys.executable, str(script), "--port", str(self.port), *self.extra_args]


def test_server_lifecycle_with_a_stand_in(tmp_path: Path) -> None:
    import urllib.request

    server = StandInServer(data_dir=tmp_path / "data", work_dir=tmp_path / "work")
    server.start()
    try:
        with urllib.request.urlopen(f"{server.url}/key") as response:
            assert response.read().decode() == server.access_key_id
        assert server.data_dir.is_dir()
        assert len(server.access_key_id) == 20 and server.access_key_id.startswith("AKIA")
        assert len(server.secret_access_key) == 40
        port = server.port
        server.kill()
        assert not server.running and not server.healthy()
        server.start()
        assert server.port == port and server.healthy()
        assert server.stop() == 0
    finally:
        server.stop()


def test_server_start_failure_shows_stderr(tmp_path: Path) -> None:
    server = StandInServer(data_dir=tmp_path / "data", work_dir=tmp_path / "work", extra_args=("--fail",))

    with pytest.raises(ServerStartError, match="stand-in refusing to start"):
        server.start(timeout=10)


def test_aws_clients_are_bound_to_the_server_only(tmp_path: Path) -> None:
    factory = ServerFactory(tmp_path)
    server = factory(start=False, account_id="111122223333", region="eu-west-1")
    server.port = 4599

    env = server.env()
    assert env["AWS_ACCESS_KEY_ID"] == server.access_key_id
    assert env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert Path(env["AWS_CONFIG_FILE"]).read_text() == ""
    assert env["AWS_EC2_METADATA_DISABLED"] == "true" and env["AWS_PAGER"] == ""

    ecr = Boto3Clients(server)("ecr")
    assert ecr.meta.endpoint_url == "http://127.0.0.1:4599"
    assert ecr.meta.region_name == "eu-west-1"
    assert ecr.meta.config.retries["total_max_attempts"] == 1
    keys = ecr._request_signer._credentials
    assert (keys.access_key, keys.secret_key) == (server.access_key_id, server.secret_access_key)

    aws = AwsCli(server)
    listed = aws("configure", "list", check=False)
    assert listed.returncode == 0, listed.stderr
    assert server.access_key_id[-4:] in listed.stdout and "eu-west-1" in listed.stdout
