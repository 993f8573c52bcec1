"""Build valid container images without an engine: OCI image layouts written in pure Python.

Everything is deterministic for a given seed (fixed mtimes, owners and gzip headers), so a test can
build the same image twice and get the same digests, or vary the seed to get distinct content.
OCI images go into an OCI image layout (`oci:DIR:TAG`, read by skopeo, umoci and `podman pull`).
Docker schema 2 images go into a containers `dir:` layout instead, one image per directory, because
the containers tools only accept OCI media types inside an OCI layout. `BuiltImage.ref` names either.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

REF_NAME = "org.opencontainers.image.ref.name"
# A fixed creation time keeps configs (and so manifest digests) reproducible.
CREATED = "2016-03-11T04:47:23Z"
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64/v8")

Format = Literal["oci", "docker"]
# A layer is given as raw file content, a size of seeded random content, or a {path: content} map.
LayerSpec = bytes | int | Mapping[str, bytes]

_MEDIA_TYPES: dict[str, dict[str, str]] = {
    "oci": {"index": OCI_INDEX, "manifest": OCI_MANIFEST, "config": OCI_CONFIG, "layer": OCI_LAYER},
    "docker": {
        "index": DOCKER_LIST,
        "manifest": DOCKER_MANIFEST,
        "config": DOCKER_CONFIG,
        "layer": DOCKER_LAYER,
    },
}


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    @classmethod
    def parse(cls, value: str | Platform) -> Platform:
        if isinstance(value, Platform):
            return value
        parts = value.split("/")
        if len(parts) not in (2, 3):
            raise ValueError(f"platform must be os/arch[/variant], got {value!r}")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def as_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Blob:
    """One content-addressed blob as written to the layout (and as a registry must store it)."""

    media_type: str
    data: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class Layer(Blob):
    files: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    diff_id: str = ""


@dataclass(frozen=True)
class BuiltImage:
    """A single-platform image written to a layout; `ref` is its containers-transports name."""

    layout: Path
    tag: str
    platform: Platform
    manifest: Blob
    config: Blob
    layers: tuple[Layer, ...]
    ref: str = ""

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def media_type(self) -> str:
        return self.manifest.media_type

    @property
    def manifest_json(self) -> dict[str, Any]:
        return json.loads(self.manifest.data)

    @property
    def config_json(self) -> dict[str, Any]:
        return json.loads(self.config.data)

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Every blob the manifest references: config first, then layers."""
        return (self.config, *self.layers)

    @property
    def size(self) -> int:
        """ECR's imageSizeInBytes: the sum of the layer sizes (compressed)."""
        return sum(layer.size for layer in self.layers)


@dataclass(frozen=True)
class BuiltIndex:
    """A multi-platform image: an OCI image index (or Docker manifest list) over BuiltImages."""

    layout: Path
    tag: str
    index: Blob
    images: tuple[BuiltImage, ...]
    ref: str = ""

    @property
    def digest(self) -> str:
        return self.index.digest

    @property
    def media_type(self) -> str:
        return self.index.media_type

    @property
    def index_json(self) -> dict[str, Any]:
        return json.loads(self.index.data)

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Every blob and platform manifest under the index, each once."""
        seen: dict[str, Blob] = {}
        for image in self.images:
            for blob in (*image.blobs, image.manifest):
                seen.setdefault(blob.digest, blob)
        return tuple(seen.values())

    def for_platform(self, platform: str | Platform) -> BuiltImage:
        wanted = Platform.parse(platform)
        for image in self.images:
            if image.platform == wanted:
                return image
        raise KeyError(str(wanted))


def canonical_json(value: object) -> bytes:
    """Compact, key-sorted JSON: stable bytes, so stable digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def random_bytes(size: int, seed: object) -> bytes:
    return random.Random(repr(seed)).randbytes(size)


def layer_files(spec: LayerSpec, seed: object, position: int) -> dict[str, bytes]:
    if isinstance(spec, int):
        return {f"data/{position}.bin": random_bytes(spec, (seed, position))}
    if isinstance(spec, bytes | bytearray):
        return {f"data/{position}.bin": bytes(spec)}
    return dict(spec)


def make_tar(files: Mapping[str, bytes]) -> bytes:
    """A reproducible tar of regular files (and their parent directories), owned by root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for directory in _parent_dirs(files):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            archive.addfile(info)
        for path in sorted(files):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(files[path])
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(files[path]))
    return buffer.getvalue()


def _parent_dirs(files: Mapping[str, bytes]) -> list[str]:
    dirs: set[str] = set()
    for path in files:
        parts = path.strip("/").split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(dirs)


def gzip_bytes(data: bytes) -> bytes:
    # mtime=0 and no file name make the gzip header, and so the digest, reproducible.
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as stream:
        stream.write(data)
    return buffer.getvalue()


def make_layer(spec: LayerSpec, *, seed: object = 0, position: int = 0, fmt: Format = "oci") -> Layer:
    files = layer_files(spec, seed, position)
    tar = make_tar(files)
    return Layer(_MEDIA_TYPES[fmt]["layer"], gzip_bytes(tar), files=files, diff_id=sha256_digest(tar))


def make_config(
    layers: Sequence[Layer],
    platform: Platform,
    *,
    fmt: Format = "oci",
    labels: Mapping[str, str] | None = None,
) -> Blob:
    config: dict[str, object] = {
        "created": CREATED,
        **platform.as_json(),
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": dict(labels or {}),
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": CREATED, "created_by": f"dockyard-tests layer {i}"} for i in range(len(layers))],
    }
    return Blob(_MEDIA_TYPES[fmt]["config"], canonical_json(config))


def make_manifest(
    config: Blob,
    layers: Sequence[Layer],
    *,
    fmt: Format = "oci",
    annotations: Mapping[str, str] | None = None,
) -> Blob:
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": _MEDIA_TYPES[fmt]["manifest"],
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    if annotations:
        if fmt == "docker":
            raise ValueError("Docker schema 2 manifests have no annotations")
        manifest["annotations"] = dict(annotations)
    return Blob(_MEDIA_TYPES[fmt]["manifest"], canonical_json(manifest))


def build_image(
    layout_dir: str | Path,
    tag: str = "latest",
    layers: Sequence[LayerSpec] = (1024,),
    *,
    platform: str | Platform = "linux/amd64",
    seed: object = None,
    fmt: Format = "oci",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> BuiltImage:
    """Write a single-platform image to `layout_dir` and return what was written.

    `fmt="oci"`: into the OCI layout at `layout_dir`, tagged `tag` (other tags there stay).
    `fmt="docker"`: a Docker schema 2 image as the `dir:` layout `layout_dir` (which it replaces).
    `seed` varies the random content; it defaults to the tag, so different tags get different layers.
    """
    layout = Path(layout_dir)
    image = _image_blobs(layout, tag, layers, Platform.parse(platform), seed, fmt, labels, annotations)
    if fmt == "docker":
        _write_dir_layout(layout, image.manifest, image.blobs)
        return replace(image, ref=f"dir:{layout}")
    _write_blobs(layout, (*image.blobs, image.manifest))
    _tag(layout, tag, image.manifest)
    return replace(image, ref=f"oci:{layout}:{tag}")


def build_index(
    layout_dir: str | Path,
    tag: str = "latest",
    layers: Sequence[LayerSpec] = (1024,),
    *,
    platforms: Sequence[str | Platform] = DEFAULT_PLATFORMS,
    seed: object = None,
    fmt: Format = "oci",
    annotations: Mapping[str, str] | None = None,
) -> BuiltIndex:
    """Write a multi-platform image: one manifest per platform (distinct layers) under one index.

    `fmt="oci"` gives an OCI image index tagged `tag` in an OCI layout; `fmt="docker"` a Docker
    manifest list as a `dir:` layout. The per-platform manifests are reachable through it by digest.
    """
    layout = Path(layout_dir)
    seed = tag if seed is None else seed
    images = tuple(
        _image_blobs(layout, tag, layers, Platform.parse(p), (seed, str(p)), fmt, None, None) for p in platforms
    )
    index: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": _MEDIA_TYPES[fmt]["index"],
        "manifests": [image.manifest.descriptor(platform=image.platform.as_json()) for image in images],
    }
    if annotations:
        index["annotations"] = dict(annotations)
    blob = Blob(_MEDIA_TYPES[fmt]["index"], canonical_json(index))
    built = BuiltIndex(layout, tag, blob, images)
    if fmt == "docker":
        _write_dir_layout(layout, blob, built.blobs, instances=[image.manifest for image in images])
        return replace(built, ref=f"dir:{layout}")
    _write_blobs(layout, (*built.blobs, blob))
    _tag(layout, tag, blob)
    return replace(built, ref=f"oci:{layout}:{tag}")


def _image_blobs(
    layout: Path,
    tag: str,
    layers: Sequence[LayerSpec],
    platform: Platform,
    seed: object,
    fmt: Format,
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
) -> BuiltImage:
    seed = tag if seed is None else seed
    built = tuple(make_layer(spec, seed=seed, position=i, fmt=fmt) for i, spec in enumerate(layers))
    config = make_config(built, platform, fmt=fmt, labels=labels)
    manifest = make_manifest(config, built, fmt=fmt, annotations=annotations)
    return BuiltImage(layout, tag, platform, manifest, config, built)


def _write_blobs(layout: Path, blobs: Sequence[Blob]) -> None:
    blob_dir = layout / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    oci_layout = layout / "oci-layout"
    if not oci_layout.exists():
        oci_layout.write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    for blob in blobs:
        path = blob_dir / blob.digest.removeprefix("sha256:")
        if not path.exists():
            path.write_bytes(blob.data)


def _tag(layout: Path, tag: str, target: Blob) -> None:
    """Point `tag` at `target` in index.json, replacing any earlier image of that tag."""
    index_path = layout / "index.json"
    if index_path.exists():
        index = json.loads(index_path.read_text())
    else:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    kept = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag]
    index["manifests"] = [*kept, target.descriptor(annotations={REF_NAME: tag})]
    index_path.write_text(json.dumps(index, indent=2))


def _write_dir_layout(layout: Path, manifest: Blob, blobs: Sequence[Blob], instances: Sequence[Blob] = ()) -> None:
    """The containers `dir:` transport: blobs named by hex digest, the top manifest as manifest.json,
    and a list's per-platform manifests as <hex>.manifest.json."""
    if layout.exists():
        shutil.rmtree(layout)
    layout.mkdir(parents=True)
    (layout / "version").write_text("Directory Transport Version: 1.1\n")
    for blob in blobs:
        (layout / blob.digest.removeprefix("sha256:")).write_bytes(blob.data)
    for instance in instances:
        (layout / f"{instance.digest.removeprefix('sha256:')}.manifest.json").write_bytes(instance.data)
    (layout / "manifest.json").write_bytes(manifest.data)


def read_blob(layout: str | Path, digest: str) -> bytes:
    """A blob from an OCI layout, or from a `dir:` layout (where blobs sit by hex digest)."""
    algorithm, _, hex_digest = digest.partition(":")
    oci_path = Path(layout) / "blobs" / algorithm / hex_digest
    return oci_path.read_bytes() if oci_path.exists() else (Path(layout) / hex_digest).read_bytes()


def layout_tags(layout: str | Path) -> dict[str, str]:
    """Tag → digest for every tagged entry of a layout's index.json (e.g. one skopeo wrote)."""
    index = json.loads((Path(layout) / "index.json").read_text())
    return {m["annotations"][REF_NAME]: m["digest"] for m in index["manifests"] if REF_NAME in m.get("annotations", {})}
