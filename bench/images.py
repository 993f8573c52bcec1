"""A many-layer OCI image in an OCI layout directory, for skopeo to push and pull.

Layers are real gzipped tarballs (one file of random bytes each), so nothing on the way has to
treat them specially; gzip level 1 keeps building fast, and random bytes keep them incompressible."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class OciImage:
    path: Path
    layers: int
    size: int

    @property
    def ref(self) -> str:
        return f"oci:{self.path}:latest"


def _write_blob(blobs: Path, data: bytes) -> dict[str, object]:
    hexdigest = hashlib.sha256(data).hexdigest()
    (blobs / hexdigest).write_bytes(data)
    return {"digest": f"sha256:{hexdigest}", "size": len(data)}


def _layer(index: int, size: int) -> tuple[bytes, str]:
    """(gzipped tar, diff id) of a layer holding one file of seeded random bytes."""
    content = random.Random(index).randbytes(size)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"layer-{index:03d}.bin")
        info.size, info.mtime, info.mode = size, 1_500_000_000, 0o644
        tar.addfile(info, io.BytesIO(content))
    tarball = raw.getvalue()
    return gzip.compress(tarball, compresslevel=1, mtime=0), "sha256:" + hashlib.sha256(tarball).hexdigest()


def build_image(path: Path, layers: int, layer_size: int) -> OciImage:
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    descriptors, diff_ids = [], []
    for index in range(layers):
        data, diff_id = _layer(index, layer_size)
        descriptors.append({"mediaType": OCI_LAYER_GZIP, **_write_blob(blobs, data)})
        diff_ids.append(diff_id)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2016-03-11T04:47:23Z",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **_write_blob(blobs, config)},
            "layers": descriptors,
        }
    ).encode()
    entry = {
        "mediaType": OCI_MANIFEST,
        **_write_blob(blobs, manifest),
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    total = sum(int(d["size"]) for d in descriptors)  # type: ignore[call-overload]
    return OciImage(path, layers, total)
