"""Helpers for the operations tests: the `dockyard` command on a server's data directory, Prometheus
metrics, and a registry client that pushes unique images with chunked uploads and mounts."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import CommandResult, run
from tests.support.registry_http import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, RegistryHttp, digest_of
from tests.support.server import DockyardServer, clean_environ, dockyard_command


def dockyard(server: DockyardServer, *args: str, check: bool = True, timeout: float = 120) -> CommandResult:
    """`dockyard ARGS --data-dir <the server's>`, run beside the live server (online operations)."""
    result = run([*dockyard_command(), *args, "--data-dir", str(server.data_dir)], env=clean_environ(), timeout=timeout)
    return result.check() if check else result


def dockyard_json(server: DockyardServer, *args: str) -> Any:
    return json.loads(dockyard(server, *args, "--json").stdout)


def metrics(server: DockyardServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the metrics listener's /metrics, keyed by (sample name, labels)."""
    response = requests.get(server.metrics_url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= have)


@dataclass
class PushedImage:
    repository: str
    tag: str
    digest: str
    manifest: bytes
    layers: list[bytes]


class Pusher(RegistryHttp):
    """Pushes images whose manifests are unique (a config naming the tag), uploading layers in two
    chunks, or mounting them from another repository when asked; any failure raises."""

    def push_blob_chunked(self, repository: str, data: bytes) -> str:
        digest = digest_of(data)
        started = self.request("POST", f"/v2/{repository}/blobs/uploads/")
        if started.status_code != 202:
            raise PushFailed(started)
        location = started.headers["Location"]
        half = len(data) // 2
        if half:
            patched = self.request(
                "PATCH",
                location,
                data=data[:half],
                headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{half - 1}"},
            )
            if patched.status_code != 202:
                raise PushFailed(patched)
            location = patched.headers["Location"]
        done = self.request("PUT", location, params={"digest": digest}, data=data[half:])
        if done.status_code != 201:
            raise PushFailed(done)
        return digest

    def mount(self, repository: str, digest: str, source: str) -> bool:
        answer = self.request("POST", f"/v2/{repository}/blobs/uploads/", params={"mount": digest, "from": source})
        if answer.status_code == 202:
            self.request("DELETE", answer.headers["Location"])
            return False
        if answer.status_code != 201:
            raise PushFailed(answer)
        return True

    def push_unique(self, repository: str, tag: str, layers: list[bytes], mount_from: str | None = None) -> PushedImage:
        descriptors = []
        for layer in layers:
            digest = digest_of(layer)
            exists = self.request("HEAD", f"/v2/{repository}/blobs/{digest}").status_code == 200
            if not exists and not (mount_from and self.mount(repository, digest, mount_from)):
                self.push_blob_chunked(repository, layer)
            descriptors.append({"mediaType": OCI_LAYER, "digest": digest, "size": len(layer)})
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"tag": tag, "nonce": uuid.uuid4().hex}},
                "rootfs": {"type": "layers", "diff_ids": [digest_of(layer) for layer in layers]},
            }
        ).encode()
        config_digest = self.push_blob_chunked(repository, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": descriptors,
            }
        ).encode()
        answer = self.request(
            "PUT", f"/v2/{repository}/manifests/{tag}", data=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        if answer.status_code != 201:
            raise PushFailed(answer)
        digest = answer.headers["Docker-Content-Digest"]
        assert digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
        return PushedImage(repository, tag, digest, manifest, [config, *layers])


class PushFailed(Exception):
    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"{response.request.method} {response.url} answered {response.status_code}: {response.text}")
        self.response = response
