"""The OCI distribution-spec conformance suite's checks, as our own pytest tests over plain HTTP.

The official suite (Go, opencontainers/distribution-spec, conformance/) runs four workflows against
one namespace: pull, push, content discovery and content management, each with a setup that pushes
its own config blob, layer and manifest, and a teardown that deletes them (manifests first, as with
OCI_DELETE_MANIFEST_BEFORE_BLOBS's default). A second namespace receives cross-repository mounts.
These tests do the same, in the same order, with the configuration an ECR-like registry needs: both
namespaces are created first with CreateRepository, the password is an ECR authorization token, and
automatic cross-mounting is off (OCI_AUTOMATIC_CROSSMOUNT=0: a mount without `from` starts an upload).

Beyond what the suite checks, they pin down what the spec says and the suite leaves loose: the exact
headers (Location, Range "0-N", Docker-Content-Digest, OCI-Subject, OCI-Filters-Applied, Link), range
requests on blobs, 416 for chunks that leave a gap or overlap, Accept negotiation, and that invalid
names, references, digests and upload ids get a 400/404 with the spec's JSON error body, never a 500.
Every response under /v2/ is checked for `Docker-Distribution-API-Version: registry/2.0`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import secrets
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import httpx
import pytest

from tests.support.clients import Boto3Clients
from tests.support.server import DockyardServer

API_VERSION_HEADER = "Docker-Distribution-API-Version"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# The error codes the spec allows; a JSON error body must use one of them. TAG_INVALID left the
# spec's table after v1.0, but the suite still accepts it, CNCF distribution sends it, and so does
# ECR (for a push over an immutable tag): this registry keeps it for tags it refuses.
SPEC_ERROR_CODES = {
    "TAG_INVALID",
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
}
# Not pushed anywhere: the suite's "dummy" digest.
MISSING_DIGEST = "sha256:" + hashlib.sha256(b"nobody pushed this").hexdigest()
# A tag the tag grammar refuses: the suite asks for it and expects a plain 404.
INVALID_TAG = ".NOT_A_VALID_TAG"
FIRST_TAG = "tagtest0"
EMPTY_LAYER_TAG = "emptylayer"
ANNOTATION = "org.opencontainers.conformance.test"
ARTIFACT_ALPHA = "application/vnd.dockyard.test.alpha"
ARTIFACT_BETA = "application/vnd.dockyard.test.beta"
ARTIFACT_BUNDLE = "application/vnd.dockyard.test.bundle"
WORKFLOWS = 5  # one config and one manifest for each of the suite's workflow slots


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pretty(document: dict[str, Any]) -> bytes:
    """Indented with tabs, as the suite's Go encoder writes its documents."""
    return json.dumps(document, indent="\t").encode()


@dataclass(frozen=True)
class Blob:
    data: bytes
    media_type: str = "application/octet-stream"

    @cached_property
    def digest(self) -> str:
        return sha256(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, media_type: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"mediaType": media_type or self.media_type, "digest": self.digest, "size": self.size, **extra}


def gzipped_tar(name: str, content: bytes) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def image_config(author: str) -> Blob:
    config = {"author": author, "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    return Blob(pretty(config), OCI_CONFIG)


def image_manifest(config: Blob, layers: list[Blob], *, media_type: bool = True) -> Blob:
    """An image manifest whose config descriptor embeds the config (`data`) and carries a field the
    image spec does not define, which a registry must store and serve untouched."""
    document: dict[str, Any] = {"schemaVersion": 2}
    if media_type:
        document["mediaType"] = OCI_MANIFEST
    document["config"] = config.descriptor(
        data=base64.b64encode(config.data).decode(),
        newUnspecifiedField=base64.b64encode(b"not in the image spec").decode(),
    )
    document["layers"] = [layer.descriptor(newUnspecifiedField=None) for layer in layers]
    return Blob(pretty(document), OCI_MANIFEST)


def artifact(
    *,
    config: dict[str, Any],
    layers: list[dict[str, Any]],
    subject: Blob,
    artifact_type: str | None = None,
    note: str | None = None,
) -> Blob:
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        document["artifactType"] = artifact_type
    document |= {"config": config, "layers": layers, "subject": subject.descriptor(newUnspecifiedField=None)}
    if note is not None:
        document["annotations"] = {ANNOTATION: note}
    return Blob(pretty(document), OCI_MANIFEST)


@dataclass
class SuiteData:
    """What the suite's setup builds once per run: a config and a manifest per workflow, a layer, two
    loose blobs (one sent in chunks), and artifacts that refer to manifests[4] (and one to the never
    pushed manifests[3])."""

    configs: list[Blob]
    layer: Blob
    manifests: list[Blob]
    empty_layer_manifest: Blob
    blob_a: Blob
    blob_b: Blob
    empty_json: Blob
    ref_blob_a: Blob
    ref_blob_b: Blob
    alpha_config_artifact: Blob
    alpha_layer_artifact: Blob
    beta_config_artifact: Blob
    beta_layer_artifact: Blob
    orphan_artifact: Blob
    bundle: Blob
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def chunk_split(self) -> int:
        return len(self.blob_b.data) // 2 + 1

    @classmethod
    def build(cls) -> SuiteData:
        configs = [image_config(secrets.token_urlsafe(12)) for _ in range(WORKFLOWS)]
        layer = Blob(gzipped_tar("hello.txt", b"pushed by the conformance tests\n"), OCI_LAYER)
        manifests = [image_manifest(config, [layer]) for config in configs]
        empty_json = Blob(b"{}", OCI_EMPTY)
        ref_blob_a = Blob(b"first artifact payload", ARTIFACT_ALPHA)
        ref_blob_b = Blob(b"second artifact payload", ARTIFACT_BETA)
        empty = empty_json.descriptor(newUnspecifiedField=None)
        subject = manifests[4]
        alpha_config = artifact(
            config=ref_blob_a.descriptor(), layers=[empty], subject=subject, note="alpha via config"
        )
        beta_config = artifact(config=ref_blob_b.descriptor(), layers=[empty], subject=subject, note="beta via config")
        alpha_layer = artifact(
            config=empty,
            layers=[ref_blob_a.descriptor()],
            subject=subject,
            artifact_type=ARTIFACT_ALPHA,
            note="alpha via artifactType",
        )
        beta_layer = artifact(
            config=empty,
            layers=[ref_blob_b.descriptor()],
            subject=subject,
            artifact_type=ARTIFACT_BETA,
            note="beta via artifactType",
        )
        orphan = artifact(
            config=empty, layers=[ref_blob_b.descriptor()], subject=manifests[3], artifact_type=ARTIFACT_BETA
        )
        bundle_document = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": ARTIFACT_BUNDLE,
            "manifests": [alpha_config.descriptor(), alpha_layer.descriptor()],
            "subject": subject.descriptor(),
            "annotations": {ANNOTATION: "bundle"},
        }
        bundle = Blob(pretty(bundle_document), OCI_INDEX)
        data = cls(
            configs=configs,
            layer=layer,
            manifests=manifests,
            empty_layer_manifest=image_manifest(configs[1], [], media_type=False),
            blob_a=Blob(secrets.token_bytes(42)),
            blob_b=Blob(secrets.token_bytes(42)),
            empty_json=empty_json,
            ref_blob_a=ref_blob_a,
            ref_blob_b=ref_blob_b,
            alpha_config_artifact=alpha_config,
            alpha_layer_artifact=alpha_layer,
            beta_config_artifact=beta_config,
            beta_layer_artifact=beta_layer,
            orphan_artifact=orphan,
            bundle=bundle,
        )
        for blob in (alpha_config, alpha_layer, beta_config, beta_layer, bundle):
            data.notes[blob.digest] = json.loads(blob.data)["annotations"][ANNOTATION]
        return data

    def expected_referrer(self, manifest: Blob) -> dict[str, Any]:
        """The descriptor the referrers API must list for `manifest`: artifactType from the document,
        else from its config's media type; the manifest's annotations."""
        document = json.loads(manifest.data)
        artifact_type = document.get("artifactType") or document["config"]["mediaType"]
        return {
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.size,
            "artifactType": artifact_type,
            "annotations": document["annotations"],
        }


def _check_api_version(response: httpx.Response) -> None:
    if response.request.url.path.startswith("/v2"):
        assert response.headers.get(API_VERSION_HEADER) == "registry/2.0", (
            f"{response.request.method} {response.request.url} answered {response.status_code} "
            f"without {API_VERSION_HEADER}: registry/2.0"
        )


def registry_client(server: DockyardServer, auth: tuple[str, str] | None) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=auth, timeout=60, event_hooks={"response": [_check_api_version]})


def error_codes(response: httpx.Response) -> list[str]:
    """The codes of a spec-shaped JSON error body (and that it is one)."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    errors = response.json()["errors"]
    assert isinstance(errors, list) and errors, response.text
    for error in errors:
        assert isinstance(error["code"], str)
        assert isinstance(error.get("message", ""), str)
    return [error["code"] for error in errors]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    if response.request.method != "HEAD":
        assert error_codes(response)[0] == code, response.text


@dataclass
class Registry:
    """A namespace of the registry under test, spoken to as the suite's client does."""

    http: httpx.Client
    name: str
    cross_name: str

    def path(self, suffix: str, name: str | None = None) -> str:
        return f"/v2/{name or self.name}{suffix}"

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, url, **kw)

    def start_upload(self, name: str | None = None, **kw: Any) -> httpx.Response:
        response = self.http.post(self.path("/blobs/uploads/", name), **kw)
        assert response.status_code == 202, response.text
        assert response.headers["location"]
        return response

    def push_blob(self, blob: Blob, name: str | None = None) -> httpx.Response:
        """POST, then a monolithic PUT of the whole blob."""
        location = self.start_upload(name).headers["location"]
        response = self.http.put(
            location,
            params={"digest": blob.digest},
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 201, response.text
        return response

    def put_manifest(self, reference: str, manifest: Blob, name: str | None = None) -> httpx.Response:
        return self.http.put(
            self.path(f"/manifests/{reference}", name),
            content=manifest.data,
            headers={"Content-Type": manifest.media_type},
        )

    def get_manifest(self, reference: str, accept: str | None = OCI_MANIFEST, method: str = "GET") -> httpx.Response:
        headers = {"Accept": accept} if accept else {}
        return self.http.request(method, self.path(f"/manifests/{reference}"), headers=headers)

    def blob(self, digest: str, method: str = "GET", name: str | None = None, **kw: Any) -> httpx.Response:
        return self.http.request(method, self.path(f"/blobs/{digest}", name), **kw)

    def delete_manifest(self, reference: str) -> httpx.Response:
        return self.http.delete(self.path(f"/manifests/{reference}"))

    def delete_blob(self, digest: str) -> httpx.Response:
        return self.http.delete(self.path(f"/blobs/{digest}"))

    def tags(self, **params: Any) -> httpx.Response:
        return self.http.get(self.path("/tags/list"), params=params)

    def referrers(self, digest: str, **params: Any) -> httpx.Response:
        return self.http.get(self.path(f"/referrers/{digest}"), params=params)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def password(boto3_client: Boto3Clients) -> str:
    token = boto3_client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, secret = base64.b64decode(token).decode().partition(":")
    assert user == "AWS"
    return secret


@pytest.fixture(scope="module")
def namespaces(boto3_client: Boto3Clients) -> Iterator[tuple[str, str]]:
    """The suite's OCI_NAMESPACE (with slashes, as real namespaces have) and OCI_CROSSMOUNT_NAMESPACE:
    ECR needs repositories to exist before anything is pushed."""
    ecr = boto3_client("ecr")
    names = (f"{unique('conformance')}/team/app", unique("conformance-crossmount"))
    for name in names:
        ecr.create_repository(repositoryName=name)
    yield names
    for name in names:
        ecr.delete_repository(repositoryName=name, force=True)


@pytest.fixture(scope="module")
def reg(dockyard_server: DockyardServer, password: str, namespaces: tuple[str, str]) -> Iterator[Registry]:
    with registry_client(dockyard_server, ("AWS", password)) as http:
        yield Registry(http, *namespaces)


@pytest.fixture(scope="module")
def data() -> SuiteData:
    return SuiteData.build()


@pytest.fixture
def fresh_repo(boto3_client: Boto3Clients, reg: Registry) -> Iterator[Registry]:
    """A namespace of its own, for tests that must not disturb the workflows' one."""
    ecr = boto3_client("ecr")
    name = unique("conformance-extra")
    ecr.create_repository(repositoryName=name)
    yield Registry(reg.http, name, reg.cross_name)
    ecr.delete_repository(repositoryName=name, force=True)


def assert_manifest_served(response: httpx.Response, manifest: Blob, method: str) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["docker-content-digest"] == manifest.digest
    assert response.headers["content-type"] == manifest.media_type
    assert response.headers["content-length"] == str(manifest.size)
    assert response.content == (b"" if method == "HEAD" else manifest.data)


def assert_blob_created(response: httpx.Response, reg: Registry, blob: Blob, name: str | None = None) -> None:
    assert response.status_code == 201, response.text
    assert response.headers["location"] == reg.path(f"/blobs/{blob.digest}", name)
    assert response.headers["docker-content-digest"] == blob.digest
    fetched = reg.http.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.content == blob.data


def assert_upload_state(response: httpx.Response, reg: Registry, size: int, name: str | None = None) -> None:
    """Location names this namespace's upload, and Range ("0-<last byte>", "0-0" when empty) its size."""
    assert response.headers["location"].startswith(reg.path("/blobs/uploads/", name))
    assert response.headers["range"] == f"0-{max(size - 1, 0)}"


# --- 1. Pull ---------------------------------------------------------------------------------


class TestPull:
    @pytest.fixture(scope="class", autouse=True)
    def setup(self, reg: Registry, data: SuiteData) -> None:
        for blob in (data.configs[0], data.configs[1], data.layer):
            reg.push_blob(blob)
        assert reg.put_manifest(FIRST_TAG, data.manifests[0]).status_code == 201
        assert reg.put_manifest(data.manifests[1].digest, data.manifests[1]).status_code == 201

    def test_the_setup_tag_is_listed(self, reg: Registry) -> None:
        assert FIRST_TAG in reg.tags().json()["tags"]

    @pytest.mark.parametrize("method", ["HEAD", "GET"])
    def test_missing_blob_is_404(self, reg: Registry, method: str) -> None:
        assert_error(reg.blob(MISSING_DIGEST, method), 404, "BLOB_UNKNOWN")

    def test_head_blob(self, reg: Registry, data: SuiteData) -> None:
        response = reg.blob(data.configs[0].digest, "HEAD")
        assert response.status_code == 200
        assert response.headers["docker-content-digest"] == data.configs[0].digest
        assert response.headers["content-length"] == str(data.configs[0].size)
        assert response.content == b""

    def test_get_blob(self, reg: Registry, data: SuiteData) -> None:
        response = reg.blob(data.configs[0].digest)
        assert response.status_code == 200
        assert response.headers["docker-content-digest"] == data.configs[0].digest
        assert response.headers["content-length"] == str(data.configs[0].size)
        assert response.content == data.configs[0].data

    @pytest.mark.parametrize("method", ["HEAD", "GET"])
    def test_missing_manifest_is_404(self, reg: Registry, method: str) -> None:
        assert_error(reg.get_manifest(INVALID_TAG, method=method), 404, "MANIFEST_UNKNOWN")
        assert_error(reg.get_manifest("no-such-tag", method=method), 404, "MANIFEST_UNKNOWN")
        assert_error(reg.get_manifest(MISSING_DIGEST, method=method), 404, "MANIFEST_UNKNOWN")

    @pytest.mark.parametrize("method", ["HEAD", "GET"])
    @pytest.mark.parametrize("index", [0, 1])
    def test_manifest_by_digest(self, reg: Registry, data: SuiteData, method: str, index: int) -> None:
        manifest = data.manifests[index]
        assert_manifest_served(reg.get_manifest(manifest.digest, method=method), manifest, method)

    @pytest.mark.parametrize("method", ["HEAD", "GET"])
    def test_manifest_by_tag(self, reg: Registry, data: SuiteData, method: str) -> None:
        assert_manifest_served(reg.get_manifest(FIRST_TAG, method=method), data.manifests[0], method)

    def test_malformed_digest_reference_has_a_spec_error_body(self, reg: Registry) -> None:
        response = reg.http.request(
            "GET",
            reg.path("/manifests/sha256:totallywrong"),
            headers={"Accept": OCI_MANIFEST, "Content-Type": OCI_MANIFEST},
            content=b"blablabla",
        )
        assert response.status_code in (400, 404)
        assert error_codes(response)[0] in SPEC_ERROR_CODES

    def test_teardown(self, reg: Registry, data: SuiteData) -> None:
        # OCI_DELETE_MANIFEST_BEFORE_BLOBS's default order: manifests, then blobs.
        for manifest in data.manifests[:2]:
            assert reg.delete_manifest(manifest.digest).status_code == 202
        for blob in (data.configs[0], data.configs[1], data.layer):
            assert reg.delete_blob(blob.digest).status_code == 202
        assert_error(reg.get_manifest(FIRST_TAG), 404, "MANIFEST_UNKNOWN")
        assert_error(reg.blob(data.configs[0].digest), 404, "BLOB_UNKNOWN")


# --- 2. Push ---------------------------------------------------------------------------------


def chunks(data: bytes, size: int = 7) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class TestPush:
    def test_streamed_upload(self, reg: Registry, data: SuiteData) -> None:
        started = reg.start_upload()
        assert_upload_state(started, reg, 0)
        assert started.headers["content-length"] == "0"
        # A generator body goes out with Transfer-Encoding: chunked and no Content-Length.
        patched = reg.http.patch(
            started.headers["location"],
            content=chunks(data.blob_a.data),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert "content-length" not in patched.request.headers
        assert patched.status_code == 202, patched.text
        assert_upload_state(patched, reg, data.blob_a.size)
        closed = reg.http.put(patched.headers["location"], params={"digest": data.blob_a.digest})
        assert_blob_created(closed, reg, data.blob_a)

    def test_several_streamed_chunks(self, fresh_repo: Registry, data: SuiteData) -> None:
        reg, blob = fresh_repo, data.blob_b
        location = reg.start_upload().headers["location"]
        for piece in (blob.data[:10], blob.data[10:30], blob.data[30:]):
            patched = reg.http.patch(location, content=chunks(piece))
            assert patched.status_code == 202, patched.text
            location = patched.headers["location"]
        assert_upload_state(patched, reg, blob.size)
        assert_blob_created(reg.http.put(location, params={"digest": blob.digest}), reg, blob)

    def test_monolithic_post_with_digest(self, reg: Registry, data: SuiteData) -> None:
        blob = data.configs[1]
        assert_error(reg.blob(MISSING_DIGEST), 404, "BLOB_UNKNOWN")
        response = reg.http.post(
            reg.path("/blobs/uploads/"),
            params={"digest": blob.digest},
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        # The spec allows 202 (then the blob is not there yet); this registry completes it at once.
        assert_blob_created(response, reg, blob)

    def test_monolithic_post_then_put(self, reg: Registry, data: SuiteData) -> None:
        for blob in (data.configs[1], data.layer):
            started = reg.start_upload()
            closed = reg.http.put(
                started.headers["location"],
                params={"digest": blob.digest},
                content=blob.data,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert_blob_created(closed, reg, blob)

    def test_chunked_upload(self, reg: Registry, data: SuiteData) -> None:
        blob, split = data.blob_b.data, data.chunk_split
        first, second = blob[:split], blob[split:]
        first_range, second_range = f"0-{split - 1}", f"{split}-{len(blob) - 1}"

        # A chunk that does not start where the upload stands is refused.
        started = reg.start_upload(headers={"Content-Length": "0"})
        assert "oci-chunk-min-length" not in started.headers
        out_of_order = reg.http.patch(
            started.headers["location"],
            content=second,
            headers={"Content-Type": "application/octet-stream", "Content-Range": second_range},
        )
        assert_error(out_of_order, 416, "BLOB_UPLOAD_INVALID")
        assert_upload_state(out_of_order, reg, 0)

        started = reg.start_upload(headers={"Content-Length": "0"})
        upload_url = started.headers["location"]
        patched = reg.http.patch(
            upload_url,
            content=first,
            headers={"Content-Type": "application/octet-stream", "Content-Range": first_range},
        )
        assert patched.status_code == 202, patched.text
        assert patched.headers["range"] == first_range

        # Sending the first chunk again overlaps what the upload has.
        retried = reg.http.patch(
            upload_url,
            content=first,
            headers={"Content-Type": "application/octet-stream", "Content-Range": first_range},
        )
        assert_error(retried, 416, "BLOB_UPLOAD_INVALID")
        assert retried.headers["range"] == first_range

        status = reg.http.get(upload_url)
        assert status.status_code == 204
        assert status.headers["location"]
        assert status.headers["range"] == first_range
        assert status.content == b""

        patched = reg.http.patch(
            status.headers["location"],
            content=second,
            headers={"Content-Type": "application/octet-stream", "Content-Range": second_range},
        )
        assert patched.status_code == 202, patched.text
        assert patched.headers["range"] == f"0-{len(blob) - 1}"
        closed = reg.http.put(
            patched.headers["location"],
            params={"digest": data.blob_b.digest},
            headers={"Content-Length": "0", "Content-Type": "application/octet-stream"},
        )
        assert_blob_created(closed, reg, data.blob_b)

    def test_chunked_upload_with_the_last_chunk_in_the_put(self, fresh_repo: Registry, data: SuiteData) -> None:
        reg, blob, split = fresh_repo, data.blob_b.data, data.chunk_split
        started = reg.start_upload()
        patched = reg.http.patch(
            started.headers["location"], content=blob[:split], headers={"Content-Range": f"0-{split - 1}"}
        )
        assert patched.status_code == 202
        closed = reg.http.put(
            patched.headers["location"],
            params={"digest": data.blob_b.digest},
            content=blob[split:],
            headers={"Content-Range": f"{split}-{len(blob) - 1}", "Content-Type": "application/octet-stream"},
        )
        assert_blob_created(closed, reg, data.blob_b)

    @pytest.mark.parametrize("method", ["PATCH", "PUT"])
    @pytest.mark.parametrize("kind", ["gap", "overlap"])
    def test_a_chunk_leaving_a_gap_or_overlapping_is_416(
        self, fresh_repo: Registry, data: SuiteData, method: str, kind: str
    ) -> None:
        reg, blob = fresh_repo, data.blob_b.data
        started = reg.start_upload()
        patched = reg.http.patch(started.headers["location"], content=blob[:10], headers={"Content-Range": "0-9"})
        assert patched.status_code == 202
        start = 12 if kind == "gap" else 5
        refused = reg.http.request(
            method,
            patched.headers["location"],
            params={"digest": data.blob_b.digest} if method == "PUT" else None,
            content=blob[start:],
            headers={"Content-Range": f"{start}-{len(blob) - 1}"},
        )
        assert_error(refused, 416, "BLOB_UPLOAD_INVALID")
        assert_upload_state(refused, reg, 10)
        # The upload is untouched and goes on from where it stood.
        status = reg.http.get(patched.headers["location"])
        assert status.status_code == 204
        assert status.headers["range"] == "0-9"
        closed = reg.http.put(
            status.headers["location"],
            params={"digest": data.blob_b.digest},
            content=blob[10:],
            headers={"Content-Range": f"10-{len(blob) - 1}"},
        )
        assert_blob_created(closed, reg, data.blob_b)

    @pytest.mark.parametrize("content_range", ["bytes", "10-", "9-0", "a-b", "-4"])
    def test_an_unreadable_content_range_is_416(self, fresh_repo: Registry, content_range: str) -> None:
        started = fresh_repo.start_upload()
        refused = fresh_repo.http.patch(
            started.headers["location"], content=b"01234", headers={"Content-Range": content_range}
        )
        assert_error(refused, 416, "BLOB_UPLOAD_INVALID")

    def test_a_content_range_longer_than_the_body_is_416(self, fresh_repo: Registry) -> None:
        started = fresh_repo.start_upload()
        refused = fresh_repo.http.patch(started.headers["location"], content=b"01234", headers={"Content-Range": "0-9"})
        assert_error(refused, 416, "BLOB_UPLOAD_INVALID")
        assert fresh_repo.http.get(started.headers["location"]).headers["range"] == "0-0"

    def test_a_streamed_chunk_shorter_than_its_content_range_is_refused(self, fresh_repo: Registry) -> None:
        started = fresh_repo.start_upload()
        refused = fresh_repo.http.patch(
            started.headers["location"], content=chunks(b"01234"), headers={"Content-Range": "0-9"}
        )
        assert_error(refused, 416, "BLOB_UPLOAD_INVALID")
        assert fresh_repo.http.get(started.headers["location"]).headers["range"] == "0-0"

    def test_wrong_digest_is_400_and_stores_nothing(self, fresh_repo: Registry, data: SuiteData) -> None:
        reg, wrong = fresh_repo, data.blob_a.digest
        started = reg.start_upload()
        refused = reg.http.put(started.headers["location"], params={"digest": wrong}, content=b"other bytes")
        assert_error(refused, 400, "DIGEST_INVALID")
        refused = reg.http.post(reg.path("/blobs/uploads/"), params={"digest": wrong}, content=b"other bytes")
        assert_error(refused, 400, "DIGEST_INVALID")
        assert_error(reg.blob(wrong, "HEAD"), 404, "BLOB_UNKNOWN")

    @pytest.mark.parametrize("digest", [None, "", "sha256:xyz", "md5:d41d8cd98f00b204e9800998ecf8427e", "%00"])
    def test_closing_put_needs_a_valid_digest(self, fresh_repo: Registry, digest: str | None) -> None:
        started = fresh_repo.start_upload()
        refused = fresh_repo.http.put(
            started.headers["location"], params={} if digest is None else {"digest": digest}, content=b"x"
        )
        assert_error(refused, 400, "DIGEST_INVALID")

    def test_empty_blob(self, fresh_repo: Registry) -> None:
        empty = Blob(b"")
        created = fresh_repo.http.post(fresh_repo.path("/blobs/uploads/"), params={"digest": empty.digest})
        assert_blob_created(created, fresh_repo, empty)
        head = fresh_repo.blob(empty.digest, "HEAD")
        assert head.status_code == 200
        assert head.headers["content-length"] == "0"

    def test_cancel_upload(self, fresh_repo: Registry) -> None:
        upload_url = fresh_repo.start_upload().headers["location"]
        cancelled = fresh_repo.http.delete(upload_url)
        assert cancelled.status_code == 204
        assert_error(fresh_repo.http.get(upload_url), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(fresh_repo.http.patch(upload_url, content=b"late"), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(fresh_repo.http.delete(upload_url), 404, "BLOB_UPLOAD_UNKNOWN")

    def test_an_upload_belongs_to_its_namespace(self, reg: Registry, fresh_repo: Registry) -> None:
        upload_url = fresh_repo.start_upload().headers["location"]
        elsewhere = upload_url.replace(fresh_repo.path(""), reg.path(""), 1)
        assert_error(reg.http.get(elsewhere), 404, "BLOB_UPLOAD_UNKNOWN")

    # Cross-repository blob mount (into OCI_CROSSMOUNT_NAMESPACE).

    def test_mount_without_from_starts_an_upload(self, reg: Registry) -> None:
        response = reg.http.post(reg.path("/blobs/uploads/", reg.cross_name), params={"mount": MISSING_DIGEST})
        assert response.status_code == 202, response.text
        assert_upload_state(response, reg, 0, reg.cross_name)

    def test_mount_from_another_namespace(self, reg: Registry, data: SuiteData) -> None:
        reg.push_blob(data.blob_a)
        response = reg.http.post(
            reg.path("/blobs/uploads/", reg.cross_name), params={"mount": data.blob_a.digest, "from": reg.name}
        )
        assert_blob_created(response, reg, data.blob_a, reg.cross_name)

    def test_mount_of_a_missing_blob_starts_an_upload(self, reg: Registry) -> None:
        response = reg.http.post(
            reg.path("/blobs/uploads/", reg.cross_name), params={"mount": MISSING_DIGEST, "from": reg.name}
        )
        assert response.status_code == 202
        assert_upload_state(response, reg, 0, reg.cross_name)

    def test_no_automatic_mount_without_from(self, reg: Registry, data: SuiteData) -> None:
        # OCI_AUTOMATIC_CROSSMOUNT=0: even a blob the target has already is not mounted without `from`.
        response = reg.http.post(reg.path("/blobs/uploads/", reg.cross_name), params={"mount": data.blob_a.digest})
        assert response.status_code == 202
        only_here = Blob(secrets.token_bytes(16))
        reg.push_blob(only_here)
        response = reg.http.post(reg.path("/blobs/uploads/", reg.cross_name), params={"mount": only_here.digest})
        assert response.status_code == 202
        assert_error(reg.blob(only_here.digest, "HEAD", reg.cross_name), 404, "BLOB_UNKNOWN")

    @pytest.mark.parametrize(
        "params",
        [
            {"mount": "sha256:not-a-digest", "from": "{name}"},
            {"mount": "{digest}", "from": "Not/A/Valid/Name"},
            {"mount": "{digest}", "from": "no-such-repository"},
            {"mount": "", "from": "{name}"},
        ],
    )
    def test_a_mount_that_cannot_happen_starts_an_upload(
        self, reg: Registry, data: SuiteData, params: dict[str, str]
    ) -> None:
        query = {k: v.format(name=reg.name, digest=data.blob_a.digest) for k, v in params.items()}
        response = reg.http.post(reg.path("/blobs/uploads/", reg.cross_name), params=query)
        assert response.status_code == 202, response.text
        assert_upload_state(response, reg, 0, reg.cross_name)

    # Manifest upload.

    def test_missing_manifest_is_404(self, reg: Registry) -> None:
        assert_error(reg.get_manifest(INVALID_TAG), 404, "MANIFEST_UNKNOWN")

    def test_put_manifest_under_four_tags(self, reg: Registry, data: SuiteData) -> None:
        manifest = data.manifests[1]
        for i in range(4):
            response = reg.put_manifest(f"test{i}", manifest)
            assert response.status_code == 201, response.text
            assert response.headers["location"] == reg.path(f"/manifests/{manifest.digest}")
            assert response.headers["docker-content-digest"] == manifest.digest
            assert "oci-subject" not in response.headers
        fetched = reg.http.get(response.headers["location"], headers={"Accept": OCI_MANIFEST})
        assert_manifest_served(fetched, manifest, "GET")
        for i in range(4):
            assert_manifest_served(reg.get_manifest(f"test{i}"), manifest, "GET")

    def test_put_manifest_without_layers(self, reg: Registry, data: SuiteData) -> None:
        manifest = data.empty_layer_manifest
        response = reg.put_manifest(EMPTY_LAYER_TAG, manifest)
        assert response.status_code == 201, response.text
        assert response.headers["location"] == reg.path(f"/manifests/{manifest.digest}")
        # No mediaType in the document: the Content-Type it was pushed with is what is served.
        assert_manifest_served(reg.get_manifest(manifest.digest), manifest, "GET")

    def test_get_pushed_manifest_by_digest(self, reg: Registry, data: SuiteData) -> None:
        assert_manifest_served(reg.get_manifest(data.manifests[1].digest), data.manifests[1], "GET")

    def test_manifest_naming_a_missing_blob_is_refused(self, reg: Registry, data: SuiteData) -> None:
        manifest = image_manifest(image_config("never uploaded"), [data.layer])
        assert_error(reg.put_manifest("missing-blob", manifest), 400, "MANIFEST_BLOB_UNKNOWN")

    def test_invalid_manifest_has_a_spec_error_body(self, reg: Registry) -> None:
        response = reg.put_manifest("sha256:totallywrong", Blob(b"blablabla", OCI_MANIFEST))
        assert response.status_code == 400
        assert error_codes(response)[0] in SPEC_ERROR_CODES
        assert_error(reg.put_manifest("a-tag", Blob(b"blablabla", OCI_MANIFEST)), 400, "MANIFEST_INVALID")

    def test_manifest_not_matching_its_digest_is_refused(self, reg: Registry, data: SuiteData) -> None:
        manifest = data.manifests[1]
        altered = Blob(manifest.data + b"  ", manifest.media_type)
        assert_error(reg.put_manifest(manifest.digest, altered), 400, "DIGEST_INVALID")

    def test_invalid_tag_is_refused(self, reg: Registry, data: SuiteData) -> None:
        assert_error(reg.put_manifest(INVALID_TAG, data.manifests[1]), 400, "TAG_INVALID")

    def test_large_manifest(self, fresh_repo: Registry, data: SuiteData) -> None:
        fresh_repo.push_blob(data.configs[1])
        document = json.loads(data.empty_layer_manifest.data)
        document["annotations"] = {f"large-annotation-{i}": "A" * 10000 for i in range(390)}
        manifest = Blob(json.dumps(document).encode(), OCI_MANIFEST)
        assert 3_900_000 < manifest.size < 4 * 1024 * 1024
        assert fresh_repo.put_manifest("large", manifest).status_code == 201
        assert_manifest_served(fresh_repo.get_manifest("large"), manifest, "GET")
        document["annotations"]["overflow"] = "B" * (4 * 1024 * 1024 - manifest.size + 1)
        too_large = Blob(json.dumps(document).encode(), OCI_MANIFEST)
        assert_error(fresh_repo.put_manifest("too-large", too_large), 413, "SIZE_INVALID")

    def test_teardown(self, reg: Registry, data: SuiteData) -> None:
        assert reg.delete_manifest(data.manifests[1].digest).status_code == 202
        assert reg.delete_manifest(data.empty_layer_manifest.digest).status_code == 202
        for blob in (data.configs[1], data.layer):
            assert reg.delete_blob(blob.digest).status_code == 202
        tags = reg.tags().json()["tags"]
        assert not {"test0", "test1", "test2", "test3", EMPTY_LAYER_TAG} & set(tags)


# --- 3. Content discovery --------------------------------------------------------------------


@dataclass
class DiscoverySetup:
    subject_responses: dict[str, tuple[httpx.Response, str]]


class TestContentDiscovery:
    @pytest.fixture(scope="class")
    def setup(self, reg: Registry, data: SuiteData) -> DiscoverySetup:
        reg.push_blob(data.configs[2])
        reg.push_blob(data.layer)
        for i in range(4):
            assert reg.put_manifest(f"test{i}", data.manifests[2]).status_code == 201
        # Referrers pushed before their subject exists, then the subject, then more referrers.
        responses: dict[str, tuple[httpx.Response, str]] = {}
        subject = data.manifests[4].digest
        reg.push_blob(data.empty_json)
        reg.push_blob(data.ref_blob_a)
        for manifest in (data.alpha_config_artifact, data.alpha_layer_artifact, data.bundle):
            responses[manifest.digest] = (reg.put_manifest(manifest.digest, manifest), subject)
        reg.push_blob(data.configs[4])
        reg.push_blob(data.layer)
        assert reg.put_manifest(FIRST_TAG, data.manifests[4]).status_code == 201
        reg.push_blob(data.ref_blob_b)
        for manifest in (data.beta_config_artifact, data.beta_layer_artifact):
            responses[manifest.digest] = (reg.put_manifest(manifest.digest, manifest), subject)
        orphan = data.orphan_artifact
        responses[orphan.digest] = (reg.put_manifest(orphan.digest, orphan), data.manifests[3].digest)
        return DiscoverySetup(responses)

    def test_pushing_a_manifest_with_a_subject_answers_oci_subject(self, setup: DiscoverySetup) -> None:
        assert len(setup.subject_responses) == 6
        for response, subject in setup.subject_responses.values():
            assert response.status_code == 201, response.text
            assert response.headers["oci-subject"] == subject

    def test_tag_list(self, reg: Registry, setup: DiscoverySetup) -> None:
        response = reg.tags()
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert body["name"] == reg.name
        assert body["tags"] == sorted(body["tags"])
        assert {"test0", "test1", "test2", "test3", FIRST_TAG} <= set(body["tags"])
        assert "link" not in response.headers

    def test_tag_list_with_n(self, reg: Registry, setup: DiscoverySetup) -> None:
        everything = reg.tags().json()["tags"]
        half = len(everything) // 2
        response = reg.tags(n=half)
        assert response.status_code == 200
        assert response.json()["tags"] == everything[:half]
        next_page = f"{reg.path('/tags/list')}?n={half}&last={everything[half - 1]}"
        assert response.headers["link"] == f'<{next_page}>; rel="next"'

    def test_tag_list_with_n_and_last(self, reg: Registry, setup: DiscoverySetup) -> None:
        everything = reg.tags().json()["tags"]
        half = len(everything) // 2
        page = reg.tags(n=half, last=everything[half - 1]).json()["tags"]
        assert page == everything[half : 2 * half]
        assert everything[half - 1] not in page

    def test_following_link_headers_walks_every_tag(self, reg: Registry, setup: DiscoverySetup) -> None:
        seen: list[str] = []
        url: str | None = reg.path("/tags/list") + "?n=2"
        while url:
            response = reg.http.get(url)
            assert response.status_code == 200
            seen += response.json()["tags"]
            link = response.headers.get("link")
            url = link[1 : link.index(">")] if link else None
        assert seen == reg.tags().json()["tags"]

    def test_tag_list_with_last_only(self, reg: Registry, setup: DiscoverySetup) -> None:
        everything = reg.tags().json()["tags"]
        assert reg.tags(last=everything[0]).json()["tags"] == everything[1:]
        assert reg.tags(last=everything[-1]).json()["tags"] == []

    def test_tag_list_with_n_zero(self, reg: Registry, setup: DiscoverySetup) -> None:
        response = reg.tags(n=0)
        assert response.status_code == 200
        assert response.json() == {"name": reg.name, "tags": []}
        assert "link" not in response.headers

    def test_tag_list_with_n_past_the_end(self, reg: Registry, setup: DiscoverySetup) -> None:
        everything = reg.tags().json()["tags"]
        response = reg.tags(n=len(everything) + 5)
        assert response.json()["tags"] == everything
        assert "link" not in response.headers

    @pytest.mark.parametrize("n", ["-1", "abc", "1.5", ""])
    def test_tag_list_with_an_invalid_n(self, reg: Registry, n: str) -> None:
        response = reg.tags(n=n)
        assert response.status_code == 400
        assert error_codes(response)[0] in SPEC_ERROR_CODES

    def test_referrers_of_an_unknown_digest(self, reg: Registry, setup: DiscoverySetup) -> None:
        response = reg.referrers(MISSING_DIGEST)
        assert response.status_code == 200
        assert response.headers["content-type"] == OCI_INDEX
        assert response.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}

    def test_referrers(self, reg: Registry, data: SuiteData, setup: DiscoverySetup) -> None:
        response = reg.referrers(data.manifests[4].digest)
        assert response.status_code == 200
        assert response.headers["content-type"] == OCI_INDEX
        body = response.json()
        assert body["schemaVersion"] == 2 and body["mediaType"] == OCI_INDEX
        listed = {d["digest"]: d for d in body["manifests"]}
        assert len(listed) == len(body["manifests"]) == 5
        referrers = (
            data.alpha_config_artifact,
            data.alpha_layer_artifact,
            data.bundle,
            data.beta_config_artifact,
            data.beta_layer_artifact,
        )
        for manifest in referrers:
            assert listed[manifest.digest] == data.expected_referrer(manifest)
            assert listed[manifest.digest]["annotations"] == {ANNOTATION: data.notes[manifest.digest]}

    def test_referrers_filtered_by_artifact_type(self, reg: Registry, data: SuiteData, setup: DiscoverySetup) -> None:
        response = reg.referrers(data.manifests[4].digest, artifactType=ARTIFACT_ALPHA)
        assert response.status_code == 200
        assert response.headers["content-type"] == OCI_INDEX
        assert response.headers["oci-filters-applied"] == "artifactType"
        listed = sorted(response.json()["manifests"], key=lambda d: d["digest"])
        alphas = sorted((data.alpha_config_artifact, data.alpha_layer_artifact), key=lambda m: m.digest)
        assert listed == [data.expected_referrer(m) for m in alphas]

    def test_referrers_filter_matching_nothing(self, reg: Registry, data: SuiteData, setup: DiscoverySetup) -> None:
        response = reg.referrers(data.manifests[4].digest, artifactType="application/vnd.nothing.like.this")
        assert response.headers["oci-filters-applied"] == "artifactType"
        assert response.json()["manifests"] == []

    def test_referrers_without_a_filter_say_none_was_applied(
        self, reg: Registry, data: SuiteData, setup: DiscoverySetup
    ) -> None:
        assert "oci-filters-applied" not in reg.referrers(data.manifests[4].digest).headers

    def test_referrers_of_a_subject_never_pushed(self, reg: Registry, data: SuiteData, setup: DiscoverySetup) -> None:
        response = reg.referrers(data.manifests[3].digest)
        assert response.status_code == 200
        assert [d["digest"] for d in response.json()["manifests"]] == [data.orphan_artifact.digest]

    def test_referrers_with_an_invalid_digest(self, reg: Registry) -> None:
        assert_error(reg.referrers("sha256:short"), 400, "DIGEST_INVALID")

    def test_teardown(self, reg: Registry, data: SuiteData, setup: DiscoverySetup) -> None:
        first_deletes = [
            data.bundle.digest,
            data.manifests[2].digest,
            data.manifests[4].digest,
            data.alpha_config_artifact.digest,
            data.alpha_layer_artifact.digest,
            data.beta_config_artifact.digest,
            data.beta_layer_artifact.digest,
            data.orphan_artifact.digest,
        ]
        for reference in first_deletes:
            assert reg.delete_manifest(reference).status_code == 202, reference
        # The tag went with manifests[4]; its referrers' entries went with them.
        assert_error(reg.delete_manifest(FIRST_TAG), 404, "MANIFEST_UNKNOWN")
        assert_error(reg.delete_manifest(data.bundle.digest), 404, "MANIFEST_UNKNOWN")
        assert reg.referrers(data.manifests[4].digest).json()["manifests"] == []
        blobs = (data.configs[2], data.layer, data.configs[4], data.ref_blob_a, data.ref_blob_b, data.empty_json)
        for blob in blobs:
            assert reg.delete_blob(blob.digest).status_code == 202, blob
        assert_error(reg.delete_blob(data.empty_json.digest), 404, "BLOB_UNKNOWN")


# --- 4. Content management -------------------------------------------------------------------


class TestContentManagement:
    @pytest.fixture(scope="class")
    def tags_before(self, reg: Registry, data: SuiteData) -> int:
        reg.push_blob(data.configs[3])
        reg.push_blob(data.layer)
        assert reg.put_manifest(FIRST_TAG, data.manifests[3]).status_code == 201
        response = reg.tags()
        assert response.status_code == 200
        return len(response.json()["tags"])

    def test_delete_tag(self, reg: Registry, data: SuiteData, tags_before: int) -> None:
        assert reg.delete_manifest(FIRST_TAG).status_code == 202
        assert_error(reg.get_manifest(FIRST_TAG, method="HEAD"), 404, "MANIFEST_UNKNOWN")
        # Only the tag went: the manifest is still there by digest.
        assert reg.get_manifest(data.manifests[3].digest, method="HEAD").status_code == 200
        assert_error(reg.delete_manifest(FIRST_TAG), 404, "MANIFEST_UNKNOWN")

    def test_delete_manifest(self, reg: Registry, data: SuiteData, tags_before: int) -> None:
        digest = data.manifests[3].digest
        assert reg.delete_manifest(digest).status_code == 202
        assert_error(reg.get_manifest(digest), 404, "MANIFEST_UNKNOWN")
        assert_error(reg.delete_manifest(digest), 404, "MANIFEST_UNKNOWN")

    def test_tag_list_reflects_the_deletion(self, reg: Registry, tags_before: int) -> None:
        response = reg.tags()
        assert response.status_code == 200
        assert len(response.json()["tags"]) < tags_before

    def test_delete_blobs(self, reg: Registry, data: SuiteData, tags_before: int) -> None:
        for blob in (data.configs[3], data.layer):
            assert reg.delete_blob(blob.digest).status_code == 202
            assert_error(reg.blob(blob.digest), 404, "BLOB_UNKNOWN")
            assert_error(reg.delete_blob(blob.digest), 404, "BLOB_UNKNOWN")


# --- What the suite leaves loose, and the configuration it varies ------------------------------


@pytest.mark.parametrize("manifests_first", [True, False], ids=["manifests-first", "blobs-first"])
def test_teardown_in_either_order(fresh_repo: Registry, data: SuiteData, manifests_first: bool) -> None:
    """OCI_DELETE_MANIFEST_BEFORE_BLOBS=0 deletes blobs a manifest still names; both orders must work."""
    reg = fresh_repo
    for blob in (data.configs[0], data.layer):
        reg.push_blob(blob)
    assert reg.put_manifest("v1", data.manifests[0]).status_code == 201
    steps = [
        lambda: reg.delete_manifest(data.manifests[0].digest),
        lambda: reg.delete_blob(data.configs[0].digest),
        lambda: reg.delete_blob(data.layer.digest),
    ]
    for step in steps if manifests_first else steps[1:] + steps[:1]:
        assert step().status_code == 202
    assert_error(reg.get_manifest("v1"), 404, "MANIFEST_UNKNOWN")
    assert_error(reg.blob(data.layer.digest), 404, "BLOB_UNKNOWN")


def test_api_base(dockyard_server: DockyardServer, reg: Registry) -> None:
    for method in ("GET", "HEAD"):
        response = reg.http.request(method, "/v2/")
        assert response.status_code == 200
    with registry_client(dockyard_server, None) as anonymous:
        refused = anonymous.get("/v2/")
        assert_error(refused, 401, "UNAUTHORIZED")
        assert refused.headers["www-authenticate"].startswith("Basic realm=")
    with registry_client(dockyard_server, ("AWS", "not-a-token")) as wrong:
        assert_error(wrong.get(reg.path("/tags/list")), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v2/{name}/no-such-endpoint", 404, "UNSUPPORTED"),
        ("GET", "/v2/_nothing_here", 404, "UNSUPPORTED"),
        ("POST", "/v2/{name}/tags/list", 405, "UNSUPPORTED"),
        ("PATCH", "/v2/{name}/manifests/latest", 405, "UNSUPPORTED"),
        ("POST", "/v2/{name}/blobs/" + MISSING_DIGEST, 405, "UNSUPPORTED"),
        ("PUT", "/v2/", 405, "UNSUPPORTED"),
    ],
)
def test_unknown_routes_and_methods(reg: Registry, method: str, path: str, status: int, code: str) -> None:
    assert_error(reg.http.request(method, path.format(name=reg.name)), status, code)


def test_v2_without_the_slash(reg: Registry) -> None:
    response = reg.http.get("/v2")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("request_range", "status", "window"),
    [
        ("bytes=500-1499", 206, (500, 1499)),
        ("bytes=500-", 206, (500, 2047)),
        ("bytes=-500", 206, (1548, 2047)),
        ("bytes=2000-5000", 206, (2000, 2047)),
        ("bytes=0-0", 206, (0, 0)),
        ("bytes=500-0", 416, None),
        ("bytes=5000-10000", 416, None),
        ("bytes=2048-", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=0-1,5-9", 200, (0, 2047)),
        ("items=0-10", 200, (0, 2047)),
        ("bytes=x-y", 200, (0, 2047)),
    ],
)
def test_blob_range_requests(
    fresh_repo: Registry, request_range: str, status: int, window: tuple[int, int] | None
) -> None:
    blob = Blob(secrets.token_bytes(2048))
    fresh_repo.push_blob(blob)
    response = fresh_repo.blob(blob.digest, headers={"Range": request_range})
    assert response.status_code == status, response.text
    if status == 416:
        assert response.headers["content-range"] == "bytes */2048"
        assert error_codes(response)[0] in SPEC_ERROR_CODES
        return
    assert window is not None
    first, last = window
    assert response.content == blob.data[first : last + 1]
    assert response.headers["content-length"] == str(last - first + 1)
    assert response.headers["docker-content-digest"] == blob.digest
    assert response.headers["accept-ranges"] == "bytes"
    if status == 206:
        assert response.headers["content-range"] == f"bytes {first}-{last}/2048"


def test_manifest_etag(fresh_repo: Registry, data: SuiteData) -> None:
    fresh_repo.push_blob(data.configs[1])
    manifest = data.empty_layer_manifest
    assert fresh_repo.put_manifest("etag", manifest).status_code == 201
    response = fresh_repo.get_manifest("etag")
    assert response.headers["etag"] == f'"{manifest.digest}"'
    again = fresh_repo.http.get(
        fresh_repo.path("/manifests/etag"), headers={"Accept": OCI_MANIFEST, "If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""


@dataclass
class Catalogue:
    """An OCI index and a Docker manifest list, each over a linux/amd64 image of its own kind."""

    oci_image: Blob
    oci_index: Blob
    docker_image: Blob
    docker_list: Blob


def docker_image(config: Blob, layer: Blob) -> Blob:
    document = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": config.descriptor(DOCKER_CONFIG),
        "layers": [layer.descriptor(DOCKER_LAYER)],
    }
    return Blob(pretty(document), DOCKER_MANIFEST)


@pytest.fixture
def catalogue(fresh_repo: Registry, data: SuiteData) -> Catalogue:
    reg = fresh_repo
    for blob in (data.configs[0], data.configs[1], data.layer):
        reg.push_blob(blob)
    amd64 = {"architecture": "amd64", "os": "linux"}
    arm64 = {"architecture": "arm64", "os": "linux"}
    oci_image = data.manifests[0]
    oci_index = Blob(
        pretty({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [oci_image.descriptor(platform=amd64)]}),
        OCI_INDEX,
    )
    docker_amd64, docker_arm64 = docker_image(data.configs[0], data.layer), docker_image(data.configs[1], data.layer)
    children = [docker_arm64.descriptor(platform=arm64), docker_amd64.descriptor(platform=amd64)]
    docker_list = Blob(pretty({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": children}), DOCKER_LIST)
    assert reg.put_manifest(docker_arm64.digest, docker_arm64).status_code == 201
    for reference, manifest in (
        ("oci-image", oci_image),
        ("docker-image", docker_amd64),
        ("oci-index", oci_index),
        ("docker-list", docker_list),
    ):
        assert reg.put_manifest(reference, manifest).status_code == 201
    return Catalogue(oci_image, oci_index, docker_amd64, docker_list)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    ("reference", "accept", "served"),
    [
        ("oci-index", f"{OCI_INDEX}, {OCI_MANIFEST}", "oci_index"),
        ("oci-index", None, "oci_index"),
        ("oci-index", "*/*", "oci_index"),
        ("oci-index", "application/*", "oci_index"),
        ("oci-index", OCI_MANIFEST, None),
        ("oci-index", f"{DOCKER_MANIFEST}, {DOCKER_LIST}", None),
        ("oci-index", f"{OCI_INDEX};q=0, {OCI_MANIFEST}", None),
        ("oci-image", OCI_MANIFEST, "oci_image"),
        # ECR converts an image manifest the client cannot read, on a pull by tag.
        ("oci-image", DOCKER_MANIFEST, "converted"),
        ("docker-image", OCI_MANIFEST, "converted"),
        ("docker-image", f"{OCI_MANIFEST}, {DOCKER_MANIFEST}", "docker_image"),
        ("docker-list", f"{DOCKER_LIST}, {DOCKER_MANIFEST}", "docker_list"),
        # An old client that knows no lists gets the list's linux/amd64 image, as CNCF distribution does.
        ("docker-list", DOCKER_MANIFEST, "docker_image"),
        ("docker-list", OCI_MANIFEST, None),
    ],
)
def test_accept_negotiation(
    fresh_repo: Registry, catalogue: Catalogue, method: str, reference: str, accept: str | None, served: str | None
) -> None:
    response = fresh_repo.get_manifest(reference, accept=accept, method=method)
    if served == "converted":
        assert_converted(response, fresh_repo.get_manifest(reference, accept="*/*"), accept or "", method)
        return
    if served is None:
        assert_error(response, 404, "MANIFEST_UNKNOWN")
        if method == "GET":
            message = response.json()["errors"][0]["message"]
            assert "Accept" in message, message
        return
    assert_manifest_served(response, getattr(catalogue, served), method)


def assert_converted(response: httpx.Response, stored: httpx.Response, target: str, method: str) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == target
    if method == "HEAD":
        return
    converted, original = response.json(), stored.json()
    assert response.headers["docker-content-digest"] == "sha256:" + hashlib.sha256(response.content).hexdigest()
    assert converted["mediaType"] == target
    assert converted["config"]["digest"] == original["config"]["digest"]
    assert [layer["digest"] for layer in converted["layers"]] == [layer["digest"] for layer in original["layers"]]


def test_conversion_is_by_tag_only(fresh_repo: Registry, catalogue: Catalogue) -> None:
    response = fresh_repo.get_manifest(catalogue.oci_image.digest, accept=DOCKER_MANIFEST)
    assert_error(response, 404, "MANIFEST_UNKNOWN")
    assert "Accept" in response.json()["errors"][0]["message"]


def test_a_list_by_digest_is_served_whatever_the_accept_header(fresh_repo: Registry, catalogue: Catalogue) -> None:
    response = fresh_repo.get_manifest(catalogue.docker_list.digest, accept=DOCKER_MANIFEST)
    assert_manifest_served(response, catalogue.docker_list, "GET")


def test_a_repository_without_tags(fresh_repo: Registry) -> None:
    response = fresh_repo.tags()
    assert response.status_code == 200
    assert response.json() == {"name": fresh_repo.name, "tags": []}


def test_catalog(reg: Registry) -> None:
    response = reg.http.get("/v2/_catalog")
    assert response.status_code == 200
    assert {reg.name, reg.cross_name} <= set(response.json()["repositories"])
    first = reg.http.get("/v2/_catalog", params={"n": 1})
    assert len(first.json()["repositories"]) == 1
    assert first.headers["link"].startswith("</v2/_catalog?n=1&last=")
    assert_error(reg.http.get("/v2/_catalog", params={"n": "many"}), 400, "UNSUPPORTED")


def test_unknown_repository_is_name_unknown(reg: Registry) -> None:
    other = Registry(reg.http, unique("never-created"), reg.cross_name)
    assert_error(other.tags(), 404, "NAME_UNKNOWN")
    assert_error(other.get_manifest("latest"), 404, "NAME_UNKNOWN")
    assert_error(other.blob(MISSING_DIGEST), 404, "NAME_UNKNOWN")
    assert_error(other.http.post(other.path("/blobs/uploads/")), 404, "NAME_UNKNOWN")
    assert_error(other.referrers(MISSING_DIGEST), 404, "NAME_UNKNOWN")
    assert_error(other.delete_manifest(MISSING_DIGEST), 404, "NAME_UNKNOWN")


UPLOAD_ID = uuid.uuid4().hex
INVALID_REQUESTS = [
    # Repository names: traversal, NUL, upper case, too long.
    ("GET", "/v2/{name}/..%2f..%2fother/tags/list", 400, "NAME_INVALID"),
    ("GET", "/v2/..%2f..%2fetc/manifests/latest", 400, "NAME_INVALID"),
    ("GET", "/v2/{name}%00/tags/list", 400, "NAME_INVALID"),
    ("GET", "/v2/Upper/Case/tags/list", 400, "NAME_INVALID"),
    ("POST", "/v2/{name}/../x/blobs/uploads/", 400, "NAME_INVALID"),
    ("GET", "/v2/" + "a" * 300 + "/tags/list", 400, "NAME_INVALID"),
    # Tags and digests as references.
    ("GET", "/v2/{name}/manifests/%00", 404, "MANIFEST_UNKNOWN"),
    ("HEAD", "/v2/{name}/manifests/..%2f..%2fsecret", 404, None),
    ("DELETE", "/v2/{name}/manifests/bad%00tag", 404, "MANIFEST_UNKNOWN"),
    ("PUT", "/v2/{name}/manifests/bad%00tag", 400, "TAG_INVALID"),
    ("GET", "/v2/{name}/manifests/sha256:%00", 400, "DIGEST_INVALID"),
    ("GET", "/v2/{name}/manifests/sha256:" + "0" * 63, 400, "DIGEST_INVALID"),
    ("DELETE", "/v2/{name}/manifests/sha256:..%2f..", 404, None),
    # Blob digests.
    ("GET", "/v2/{name}/blobs/sha256:..%2f..%2fetc%2fpasswd", 404, None),
    ("GET", "/v2/{name}/blobs/sha256:%00", 400, "DIGEST_INVALID"),
    ("HEAD", "/v2/{name}/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", 400, None),
    ("DELETE", "/v2/{name}/blobs/..", 400, "DIGEST_INVALID"),
    ("GET", "/v2/{name}/blobs/SHA256:" + "0" * 64, 400, "DIGEST_INVALID"),
    # Upload ids.
    ("GET", "/v2/{name}/blobs/uploads/..%2f..%2fmetadata.db", 404, None),
    ("GET", "/v2/{name}/blobs/uploads/%00", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("PATCH", "/v2/{name}/blobs/uploads/..", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("PUT", "/v2/{name}/blobs/uploads/" + UPLOAD_ID + "?digest=" + MISSING_DIGEST, 404, "BLOB_UPLOAD_UNKNOWN"),
    ("DELETE", "/v2/{name}/blobs/uploads/" + UPLOAD_ID.upper(), 404, "BLOB_UPLOAD_UNKNOWN"),
    # Query parameters.
    ("POST", "/v2/{name}/blobs/uploads/?digest=sha256:zz", 400, "DIGEST_INVALID"),
    ("GET", "/v2/{name}/referrers/%00", 400, "DIGEST_INVALID"),
    ("GET", "/v2/{name}/referrers/latest", 400, "DIGEST_INVALID"),
]


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(server: DockyardServer, password: str, method: str, path: str, body: bytes | None) -> RawResponse:
    """The request line exactly as written: http.client neither removes dot segments nor re-escapes."""
    credentials = base64.b64encode(f"AWS:{password}".encode()).decode()
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers={"Authorization": f"Basic {credentials}"})
        response = connection.getresponse()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


@pytest.mark.parametrize(("method", "path", "status", "code"), INVALID_REQUESTS)
def test_invalid_input_gets_a_spec_error(
    dockyard_server: DockyardServer, password: str, reg: Registry, method: str, path: str, status: int, code: str | None
) -> None:
    """Never a 500, never a plain-text body: a 400/404 with the spec's JSON error document."""
    body = b"{}" if method in ("PUT", "PATCH") else None
    response = raw_request(dockyard_server, password, method, path.format(name=reg.name), body)
    assert response.status == status, (response.status, response.body)
    assert response.headers.get(API_VERSION_HEADER.lower()) == "registry/2.0"
    if method == "HEAD":
        assert response.body == b""
        return
    assert response.headers["content-type"].startswith("application/json")
    errors = json.loads(response.body)["errors"]
    assert errors and errors[0]["code"] in SPEC_ERROR_CODES
    if code is not None:
        assert errors[0]["code"] == code
