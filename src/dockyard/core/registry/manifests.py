"""Parse and validate pushed image manifests, digests, tags and repository names.

Supported documents: OCI image manifest and index (image-spec v1.1) and Docker Image Manifest
V2 Schema 2 and its manifest list. Docker schema 1 is refused.

Rules followed, from the OCI image-spec and distribution-spec v1.1 and what the CNCF
distribution registry does:

* The registry ignores parameters on the Content-Type header.
* If the document has a ``mediaType`` field it must equal the Content-Type it was pushed with.
* Without a Content-Type the type comes from ``mediaType``, then (optionally) from the layout:
  ``manifests`` without ``config``/``layers`` is an OCI index, ``config`` without
  ``manifests`` an OCI image manifest. A document that is both is ambiguous (CVE-2021-41190)
  and refused, as is an index carrying ``config``/``layers`` or a manifest carrying
  ``manifests``.
* Docker schema 2 documents must carry their ``mediaType``; OCI ones may omit it.
* Descriptors need a RFC 6838 ``mediaType``, a valid ``digest`` and a non-negative int64
  ``size`` (a JSON boolean or a float is not an integer here). Embedded ``data`` must be
  base64 and match the size and digest.
* An empty or missing ``artifactType`` counts as absent; the referrers API then reports the
  config media type for an image manifest and nothing for an index.
* A non-distributable ("foreign") layer that carries http(s) ``urls`` is fetched by clients from
  those URLs, so it need not have been uploaded (Windows base layers); as in distribution, the
  registry checks only that the URLs are http(s) without a fragment. Such layers do not count
  in ``imageSizeInBytes``: ECR reports what it stores.
* Manifests are named by their sha256 digest; a push naming one by another algorithm is refused
  as unsupported, as ECR and distribution refuse it.

Real ECR refuses an OCI manifest that has neither a ``mediaType`` field nor a media type given
with the push ("Invalid JSON syntax"), so callers mimicking that pass ``infer_from_layout=False``.
That is PutImage's reading, where the media type given with the push (``imageManifestMediaType``)
stands in for a missing ``mediaType`` field, Docker schema 2 documents included; the registry
door keeps distribution's rule that a Docker document states its own.
ECR's wording for a refused manifest is kept in ``ManifestError.message``; the precise reason
is in ``detail``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dockyard.core import client_json as wire_json

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
# Layers clients may fetch from the descriptor's `urls` rather than from the registry.
FOREIGN_LAYER_MEDIA_TYPES = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)
# The one algorithm manifests are named by (and their digest is computed with).
MANIFEST_DIGEST_ALGORITHM = "sha256"

MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST})
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
SCHEMA1_MEDIA_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
# Content-Types that say nothing about the manifest kind, so the document decides.
_UNTYPED_CONTENT_TYPES = frozenset({"", "application/json", "application/octet-stream", "text/plain"})

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
_MAX_INT64 = 2**63 - 1

# ECR's repository name rule, as botocore's service model states it (its JSON escapes the '/').
ECR_REPOSITORY_NAME_PATTERN = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*"
ECR_REPOSITORY_NAME_MIN = 2
ECR_REPOSITORY_NAME_MAX = 256

_REPOSITORY_NAME_RE = re.compile(ECR_REPOSITORY_NAME_PATTERN, re.ASCII)
_TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)
_MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}", re.ASCII)
_ENCODED_RE = {
    "sha256": re.compile(r"[a-f0-9]{64}", re.ASCII),
    "sha512": re.compile(r"[a-f0-9]{128}", re.ASCII),
}

# ECR's text for a manifest it cannot accept, whatever the structural reason.
_ECR_INVALID_MANIFEST = "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'"


class ManifestError(Exception):
    """A refused manifest, digest, reference or name.

    ``code`` is the OCI distribution error code (MANIFEST_INVALID, UNSUPPORTED, DIGEST_INVALID,
    TAG_INVALID, NAME_INVALID); ``message`` is the text ECR gives; ``detail`` says exactly why.
    """

    def __init__(self, code: str, message: str, detail: Any = None) -> None:
        super().__init__(message if detail is None else f"{message} ({detail})")
        self.code = code
        self.message = message
        self.detail = detail


class DigestError(ManifestError):
    """A digest that breaks the OCI grammar or uses an algorithm this registry does not support."""

    def __init__(self, digest: object, reason: str) -> None:
        super().__init__("DIGEST_INVALID", "invalid digest", {"digest": digest, "reason": reason})


class RepositoryNameError(ManifestError):
    """A repository name ECR would refuse; ``message`` is ECR's InvalidParameterException text."""

    def __init__(self, name: object, constraint: str) -> None:
        message = f"Invalid parameter at 'repositoryName' failed to satisfy constraint: '{constraint}'"
        super().__init__("NAME_INVALID", message, {"name": name})


def _invalid(detail: str) -> ManifestError:
    return ManifestError("MANIFEST_INVALID", _ECR_INVALID_MANIFEST, detail)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None
    urls: tuple[str, ...] = ()

    @property
    def is_external(self) -> bool:
        """A foreign layer clients fetch from its URLs, so the registry need not hold it."""
        return self.media_type in FOREIGN_LAYER_MEDIA_TYPES and bool(self.urls) and all(map(_fetchable, self.urls))


def _fetchable(url: str) -> bool:
    """distribution's rule for a foreign layer's URL: http or https, and no fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment


@dataclass(frozen=True)
class Manifest:
    media_type: str
    digest: str
    size: int
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str] | None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    def blob_digests(self) -> list[str]:
        """Digests of the blobs the manifest names: config first, then layers (the references
        that keep a stored blob from garbage collection)."""
        blobs = [self.config] if self.config is not None else []
        return [d.digest for d in (*blobs, *self.layers)]

    def required_blob_digests(self) -> list[str]:
        """Digests that must exist as blobs in the repository for the push: all but the layers
        clients fetch from elsewhere."""
        blobs = [self.config] if self.config is not None else []
        return [d.digest for d in (*blobs, *self.layers) if not d.is_external]

    def child_digests(self) -> list[str]:
        """Digests of the manifests an index or manifest list points at."""
        return [d.digest for d in self.manifests]

    def image_size(self, child_sizes: Mapping[str, int] | None = None) -> int:
        """ECR's ``imageSizeInBytes``.

        For an image: the sum of its (compressed) layer sizes, as pushed, leaving out the
        foreign layers clients fetch from elsewhere. For an index or
        manifest list ECR reports the largest size among its manifests; pass the known sizes
        of the children (digest -> size), missing ones count as 0.
        """
        if self.is_index:
            sizes = child_sizes or {}
            return max((sizes.get(d.digest, 0) for d in self.manifests), default=0)
        return sum(layer.size for layer in self.layers if not layer.is_external)


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    if algorithm not in _ENCODED_RE:
        raise DigestError(f"{algorithm}:", f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def validate_digest(digest: object) -> str:
    """Return ``digest`` if it follows the OCI digest grammar with a supported algorithm."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise DigestError(digest, "invalid checksum digest format")
    algorithm, encoded = digest.split(":", 1)
    pattern = _ENCODED_RE.get(algorithm)
    if pattern is None:
        raise DigestError(digest, f"unsupported digest algorithm {algorithm!r}")
    if not pattern.fullmatch(encoded):
        raise DigestError(digest, f"invalid {algorithm} encoding")
    return digest


def unsupported_digest_algorithm(digest: str) -> str | None:
    """ECR's refusal of a manifest named by `digest` when its algorithm is not the one manifests
    are named by (None when it is)."""
    algorithm = digest.split(":", 1)[0]
    if algorithm == MANIFEST_DIGEST_ALGORITHM:
        return None
    return (
        "Invalid parameter at 'imageDigest' failed to satisfy constraint: "
        f"'Unsupported digest algorithm {algorithm}: image digests must use {MANIFEST_DIGEST_ALGORITHM}'"
    )


def is_digest(ref: str) -> bool:
    """A reference is a digest when it has an algorithm separator; tags cannot contain ':'."""
    return ":" in ref


def validate_tag(tag: object) -> str:
    if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
        raise ManifestError("TAG_INVALID", "invalid tag", {"tag": tag})
    return tag


def validate_reference(ref: object) -> str:
    """Return ``ref`` if it is a valid tag or digest."""
    if isinstance(ref, str) and is_digest(ref):
        return validate_digest(ref)
    return validate_tag(ref)


def validate_repository_name(name: object) -> str:
    """Return ``name`` if ECR accepts it as a repository name, else raise with ECR's message."""
    if not isinstance(name, str):
        raise RepositoryNameError(name, "must not be null")
    length = len(name.encode("utf-16-le")) // 2  # ECR counts Java (UTF-16) characters
    if length < ECR_REPOSITORY_NAME_MIN:
        raise RepositoryNameError(name, f"must have length greater than or equal to {ECR_REPOSITORY_NAME_MIN}")
    if length > ECR_REPOSITORY_NAME_MAX:
        raise RepositoryNameError(name, f"must have length less than or equal to {ECR_REPOSITORY_NAME_MAX}")
    if not _REPOSITORY_NAME_RE.fullmatch(name):
        raise RepositoryNameError(name, f"must satisfy regular expression '{ECR_REPOSITORY_NAME_PATTERN}'")
    return name


def normalize_media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header, lower-cased, parameters dropped."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def accepts(media_type: str, accept_header_values: Iterable[str]) -> bool:
    """Whether ``media_type`` is acceptable under the given Accept header values.

    Each value may list several comma-separated ranges with ``q`` parameters. The most
    specific matching range decides; ``q=0`` refuses. With no ranges at all any type is
    acceptable (RFC 9110), so callers wanting distribution's stricter legacy behaviour for a
    missing Accept header must check for that themselves.
    """
    wanted = normalize_media_type(media_type)
    wanted_type = wanted.split("/", 1)[0]
    best: tuple[int, float] | None = None
    seen_any = False
    for value in accept_header_values:
        for item in value.split(","):
            if not item.strip():
                continue
            seen_any = True
            range_, quality = _parse_accept_item(item)
            if range_ == wanted:
                specificity = 3
            elif range_ == f"{wanted_type}/*":
                specificity = 2
            elif range_ == "*/*":
                specificity = 1
            else:
                continue
            if best is None or specificity > best[0]:
                best = (specificity, quality)
    if not seen_any:
        return True
    return best is not None and best[1] > 0


def _parse_accept_item(item: str) -> tuple[str, float]:
    range_, *params = item.split(";")
    quality = 1.0
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                quality = 0.0
    return range_.strip().lower(), quality


def parse_manifest(data: bytes, content_type: str | None, *, infer_from_layout: bool = True) -> Manifest:
    """Parse and validate ``data`` pushed with ``content_type`` (may be empty or None)."""
    document = _load_json_object(data)
    header_type = normalize_media_type(content_type)
    media_type = _resolve_media_type(document, header_type, infer_from_layout)
    if media_type in INDEX_MEDIA_TYPES:
        return _parse_index(document, media_type, data)
    return _parse_image_manifest(document, media_type, data)


def _load_json_object(data: bytes) -> dict[str, Any]:
    try:
        document = wire_json.loads(data)
    except wire_json.MalformedJson as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _invalid("manifest must be a JSON object")
    return document


def _resolve_media_type(document: dict[str, Any], header_type: str, infer_from_layout: bool) -> str:
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    schema_version = document.get("schemaVersion")
    if header_type in SCHEMA1_MEDIA_TYPES or declared in SCHEMA1_MEDIA_TYPES or _is_int(schema_version, 1):
        raise ManifestError(
            "UNSUPPORTED",
            "Docker Image Manifest V2 Schema 1 is not supported",
            "push the image as Docker Image Manifest V2 Schema 2 or OCI",
        )
    if header_type not in _UNTYPED_CONTENT_TYPES:
        _require_supported(header_type)
        if declared and declared != header_type:
            raise _invalid(f"mediaType in manifest should be '{header_type}' not '{declared}'")
        media_type = header_type
    elif declared:
        _require_supported(declared)
        media_type = declared
    elif infer_from_layout:
        media_type = _infer_from_layout(document)
    else:
        raise _invalid("manifest has no mediaType and none was given with the push")
    # PutImage's imageManifestMediaType stands in for the field; the registry door's Content-Type does not.
    given_instead = not infer_from_layout and not declared and media_type == header_type
    if media_type in (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST) and declared != media_type and not given_instead:
        raise _invalid(f"mediaType in manifest should be '{media_type}' not '{declared or ''}'")
    if not _is_int(schema_version, 2):
        raise _invalid(f"schemaVersion must be 2, not {json.dumps(schema_version)}")
    return media_type


def _require_supported(media_type: str) -> None:
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise ManifestError("UNSUPPORTED", f'Unsupported manifest type: "{media_type}"', media_type)


def _infer_from_layout(document: dict[str, Any]) -> str:
    has_manifests = document.get("manifests") is not None
    has_image_parts = document.get("config") is not None or document.get("layers") is not None
    if has_manifests and has_image_parts:
        raise _invalid("ambiguous manifest: it has both manifests and config/layers")
    if has_manifests:
        return OCI_INDEX
    if has_image_parts:
        return OCI_MANIFEST
    raise _invalid("cannot tell the manifest type: no mediaType, config, layers or manifests")


def _parse_image_manifest(document: dict[str, Any], media_type: str, data: bytes) -> Manifest:
    if document.get("manifests") is not None:
        raise _invalid("manifest: expected manifest but found index")
    config = _descriptor(document.get("config"), "config")
    layers = _descriptor_list(document.get("layers"), "layers")
    is_oci = media_type == OCI_MANIFEST
    artifact_type = _optional_artifact_type(document, "artifactType") if is_oci else None
    return Manifest(
        media_type=media_type,
        digest=compute_digest(data),
        size=len(data),
        config=config,
        layers=layers,
        manifests=(),
        subject=_optional_descriptor(document, "subject") if is_oci else None,
        artifact_type=artifact_type or config.media_type,
        annotations=_optional_annotations(document, "annotations"),
    )


def _parse_index(document: dict[str, Any], media_type: str, data: bytes) -> Manifest:
    if document.get("config") is not None or document.get("layers") is not None:
        raise _invalid("index: expected index but found manifest")
    is_oci = media_type == OCI_INDEX
    return Manifest(
        media_type=media_type,
        digest=compute_digest(data),
        size=len(data),
        config=None,
        layers=(),
        manifests=_descriptor_list(document.get("manifests"), "manifests", with_platform=True),
        subject=_optional_descriptor(document, "subject") if is_oci else None,
        artifact_type=_optional_artifact_type(document, "artifactType") if is_oci else None,
        annotations=_optional_annotations(document, "annotations"),
    )


def _descriptor_list(value: object, where: str, *, with_platform: bool = False) -> tuple[Descriptor, ...]:
    if not isinstance(value, list):
        raise _invalid(f"{where} must be an array")
    return tuple(_descriptor(item, f"{where}[{i}]", with_platform=with_platform) for i, item in enumerate(value))


def _optional_descriptor(document: dict[str, Any], key: str) -> Descriptor | None:
    value = document.get(key)
    return None if value is None else _descriptor(value, key)


def _descriptor(value: object, where: str, *, with_platform: bool = False) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not _MEDIA_TYPE_RE.fullmatch(media_type):
        raise _invalid(f"{where}.mediaType must be a media type, not {json.dumps(media_type)}")
    try:
        digest = validate_digest(value.get("digest"))
    except DigestError as exc:
        raise _invalid(f"{where}.digest: {exc.detail['reason']}") from None
    size = value.get("size")
    if not _is_int(size) or not 0 <= size <= _MAX_INT64:
        raise _invalid(f"{where}.size must be a non-negative integer, not {json.dumps(size)}")
    urls = value.get("urls")
    if urls is not None and not (isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
        raise _invalid(f"{where}.urls must be an array of strings")
    _check_embedded_data(value.get("data"), digest, size, where)
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=_optional_artifact_type(value, "artifactType", where),
        annotations=_optional_annotations(value, "annotations", where),
        platform=_platform(value.get("platform"), where) if with_platform else None,
        urls=tuple(urls or ()),
    )


def _check_embedded_data(data: object, digest: str, size: int, where: str) -> None:
    if data is None:
        return
    if not isinstance(data, str):
        raise _invalid(f"{where}.data must be a base64 string")
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{where}.data is not valid base64") from None
    algorithm = digest.split(":", 1)[0]
    if len(decoded) != size or compute_digest(decoded, algorithm) != digest:
        raise _invalid(f"{where}.data does not match its digest and size")


def _platform(value: object, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(f"{where}.platform must be an object")
    for key in ("architecture", "os"):
        if not isinstance(value.get(key), str):
            raise _invalid(f"{where}.platform.{key} must be a string")
    for key in ("os.version", "variant"):
        if key in value and not isinstance(value[key], str):
            raise _invalid(f"{where}.platform.{key} must be a string")
    for key in ("os.features", "features"):
        features = value.get(key)
        if features is not None and not (isinstance(features, list) and all(isinstance(f, str) for f in features)):
            raise _invalid(f"{where}.platform.{key} must be an array of strings")
    return dict(value)


def _optional_artifact_type(value: dict[str, Any], key: str, where: str = "") -> str | None:
    artifact_type = value.get(key)
    if artifact_type is None or artifact_type == "":
        return None
    if not isinstance(artifact_type, str) or not _MEDIA_TYPE_RE.fullmatch(artifact_type):
        raise _invalid(f"{_join(where, key)} must be a media type, not {json.dumps(artifact_type)}")
    return artifact_type


def _optional_annotations(value: dict[str, Any], key: str, where: str = "") -> dict[str, str] | None:
    annotations = value.get(key)
    if annotations is None:
        return None
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise _invalid(f"{_join(where, key)} must map strings to strings")
    return dict(annotations)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _is_int(value: object, expected: int | None = None) -> bool:
    """A JSON integer (not a boolean, not a float), optionally equal to ``expected``."""
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return expected is None or value == expected


# --- conversion (ECR's BatchGetImage by tag) --------------------------------------------------

# Docker image manifest V2 schema 2 and OCI image manifest describe the same thing; ECR converts
# one into the other when a client pulling by tag accepts only the other. Blob media types map
# one to one; a blob of any other type (an artifact's) leaves nothing to convert.
_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_BLOB_TYPES_DOCKER_TO_OCI = {
    _DOCKER_CONFIG: _OCI_CONFIG,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    ),
}
_BLOB_TYPES_OCI_TO_DOCKER = {oci: docker for docker, oci in _BLOB_TYPES_DOCKER_TO_OCI.items()}
_CONVERSIONS = {
    (DOCKER_MANIFEST, OCI_MANIFEST): _BLOB_TYPES_DOCKER_TO_OCI,
    (OCI_MANIFEST, DOCKER_MANIFEST): _BLOB_TYPES_OCI_TO_DOCKER,
}
# Members of an OCI image manifest that Docker's schema 2 has no place for.
_OCI_ONLY_MEMBERS = ("subject", "artifactType")


def convert_manifest(data: bytes, media_type: str, target: str) -> bytes | None:
    """The manifest `data` (of `media_type`) rewritten as `target`, or None when ECR could not
    convert it (other kinds, artifacts, OCI-only members)."""
    blob_types = _CONVERSIONS.get((media_type, target))
    if blob_types is None:
        return None
    document = json.loads(data)
    if any(member in document for member in _OCI_ONLY_MEMBERS):
        return None
    descriptors = [document.get("config"), *(document.get("layers") or [])]
    if not all(isinstance(d, dict) and d.get("mediaType") in blob_types for d in descriptors):
        return None
    for descriptor in descriptors:
        descriptor["mediaType"] = blob_types[descriptor["mediaType"]]
    document["mediaType"] = target
    return json.dumps(document, indent=3).encode("utf-8")
