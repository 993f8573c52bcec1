"""A lean OCI Distribution client over http.client, so the client costs as little CPU as possible
and the same for both registries: bodies go out with one sendall, come in with readinto."""

from __future__ import annotations

import hashlib
import http.client
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.targets import Target

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
READ_BUFFER = 1024 * 1024


class RegistryCallError(RuntimeError):
    pass


def digest_of(data: bytes | bytearray | memoryview) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class Client:
    """One keep-alive connection to a registry."""

    def __init__(self, target: Target, timeout: float = 600.0) -> None:
        self.target = target
        parts = urlsplit(target.url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        self.conn.connect()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        path: str,
        body: bytes | bytearray | memoryview | None = None,
        headers: dict[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> Response:
        all_headers = self.target.headers() | (headers or {})
        if body is not None:
            all_headers["Content-Length"] = str(len(body))
        self.conn.request(method, path, body=body, headers=all_headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status not in expect:
            raise RegistryCallError(f"{method} {path}: {response.status} {data[:500]!r}")
        return Response(response.status, response.headers, data)

    def _path(self, location: str) -> str:
        """Locations may be absolute (the reference) or absolute paths (Dockyard)."""
        parts = urlsplit(location)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def start_upload(self, repo: str) -> str:
        response = self.call("POST", f"/v2/{repo}/blobs/uploads/", b"", expect=(202,))
        return self._path(response.headers["Location"])

    def finish_upload(self, location: str, digest: str, body: memoryview | bytes = b"") -> None:
        separator = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream"}
        self.call("PUT", f"{location}{separator}digest={digest}", body, headers, expect=(201,))

    def push_monolithic(self, repo: str, data: memoryview | bytes, digest: str) -> None:
        """POST, then one PUT with the whole blob: what docker and containerd do."""
        location = self.start_upload(repo)
        self.finish_upload(location, digest, data)

    def push_chunked(self, repo: str, data: memoryview, digest: str, chunk: int) -> None:
        """POST, a PATCH per chunk with its Content-Range, then an empty PUT with the digest."""
        location = self.start_upload(repo)
        for start in range(0, len(data), chunk):
            part = data[start : start + chunk]
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + len(part) - 1}",
            }
            response = self.call("PATCH", location, part, headers, expect=(202,))
            location = self._path(response.headers["Location"])
        self.finish_upload(location, digest)

    def pull(self, repo: str, digest: str, buffer: bytearray) -> int:
        """GET a blob into `buffer` over and over; returns the bytes received."""
        self.conn.request("GET", f"/v2/{repo}/blobs/{digest}", headers=self.target.headers())
        response = self.conn.getresponse()
        if response.status != 200:
            raise RegistryCallError(f"GET blob {digest}: {response.status} {response.read()[:500]!r}")
        view = memoryview(buffer)
        total = 0
        while count := response.readinto(view):
            total += count
        return total

    def blob_exists(self, repo: str, digest: str) -> bool:
        return self.call("HEAD", f"/v2/{repo}/blobs/{digest}", expect=(200, 404)).status == 200

    def ensure_blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        if not self.blob_exists(repo, digest):
            self.push_monolithic(repo, data, digest)
        return digest

    def put_manifest(self, repo: str, reference: str, manifest: bytes, media_type: str = OCI_MANIFEST) -> str:
        response = self.call(
            "PUT", f"/v2/{repo}/manifests/{reference}", manifest, {"Content-Type": media_type}, expect=(201,)
        )
        return response.headers.get("Docker-Content-Digest") or digest_of(manifest)


def image_manifest(config_digest: str, config_size: int, layers: list[tuple[str, int]], note: str = "") -> bytes:
    """A small OCI image manifest; `note` (an annotation) makes otherwise equal manifests distinct."""
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": s} for d, s in layers],
    }
    if note:
        manifest["annotations"] = {"org.opencontainers.image.description": note}
    return json.dumps(manifest, separators=(",", ":")).encode()


def push_small_image(client: Client, repo: str, tag: str) -> str:
    """A one-layer image under `tag`; returns the manifest digest."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = b"dockyard benchmark layer\n" * 40
    config_digest = client.ensure_blob(repo, config)
    layer_digest = client.ensure_blob(repo, layer)
    manifest = image_manifest(config_digest, len(config), [(layer_digest, len(layer))])
    return client.put_manifest(repo, tag, manifest)
