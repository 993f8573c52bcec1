"""A minimal OCI Distribution client over plain HTTP, for tests that need to see every status code
(crash tests, bad inputs) rather than what skopeo or podman make of them."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import requests

from tests.support.clients import Boto3Clients
from tests.support.server import DockyardServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def registry_password(server: DockyardServer) -> str:
    ecr = Boto3Clients(server)("ecr")
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    assert user == "AWS"
    return password


@dataclass
class RegistryHttp:
    base: str
    password: str
    timeout: float = 30.0

    @classmethod
    def for_server(cls, server: DockyardServer) -> RegistryHttp:
        return cls(server.url, registry_password(server))

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        url = path if path.startswith("http") else self.base + path
        return requests.request(method, url, auth=("AWS", self.password), **kw)

    def push_blob(self, repository: str, data: bytes) -> str:
        """Monolithic push (POST, then PUT with the bytes); returns the digest."""
        digest = digest_of(data)
        started = self.request("POST", f"/v2/{repository}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        put = self.request("PUT", location, params={"digest": digest}, data=data)
        assert put.status_code == 201, put.text
        return digest

    def push_image(self, repository: str, tag: str, layers: list[bytes]) -> tuple[str, bytes]:
        """Push layers, a config and an OCI manifest; returns (manifest digest, manifest bytes)."""
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [digest_of(layer) for layer in layers]},
            }
        ).encode()
        descriptors = []
        for layer in layers:
            descriptors.append(
                {"mediaType": OCI_LAYER, "digest": self.push_blob(repository, layer), "size": len(layer)}
            )
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": self.push_blob(repository, config), "size": len(config)},
                "layers": descriptors,
            }
        ).encode()
        response = self.request(
            "PUT", f"/v2/{repository}/manifests/{tag}", data=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.status_code == 201, response.text
        return response.headers["Docker-Content-Digest"], manifest
