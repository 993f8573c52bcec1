"""Which manifest a pull gets, given the media types its client accepts: ECR's conversions on a
pull by tag, and CNCF distribution's leniencies the registry API keeps (see the README)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from dockyard.core.identity.caller import Caller
from dockyard.core.registry import images
from dockyard.core.registry.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    accepts,
    compute_digest,
    convert_manifest,
    is_digest,
)
from dockyard.core.services import Services

# What distribution hands a client that knows no manifest lists.
DEFAULT_PLATFORM = {"os": "linux", "architecture": "amd64"}


def converted(image: images.StoredImage, accept: Sequence[str]) -> images.StoredImage | None:
    """ECR's conversion on a pull by tag: an image manifest the client does not accept, rewritten
    as the Docker schema 2 or OCI image manifest it does accept, over the same blobs; None when
    no conversion is wanted or possible."""
    if not any(value.strip() for value in accept) or accepts(image.media_type, accept):
        return None
    for target in (DOCKER_MANIFEST, OCI_MANIFEST):
        if target != image.media_type and accepts(target, accept):
            manifest = convert_manifest(image.manifest, image.media_type, target)
            if manifest is not None:
                digest = compute_digest(manifest)
                return dataclasses.replace(image, manifest=manifest, media_type=target, digest=digest)
    return None


def _servable_as_stored(image: images.StoredImage, accept: Sequence[str], by_digest: bool) -> bool:
    """As CNCF distribution: no Accept header takes anything; a Docker schema 2 manifest is served
    to every client; a Docker manifest list asked for by digest is served as it is."""
    if not any(value.strip() for value in accept):
        return True
    if image.media_type == DOCKER_MANIFEST:
        return True
    if image.media_type == DOCKER_MANIFEST_LIST and by_digest:
        return True
    return accepts(image.media_type, accept)


def _default_platform_child(image: images.StoredImage) -> str | None:
    for entry in json.loads(image.manifest).get("manifests") or []:
        platform = entry.get("platform") or {}
        if all(platform.get(key) == value for key, value in DEFAULT_PLATFORM.items()):
            return entry.get("digest")
    return None


async def negotiate(
    svc: Services,
    caller: Caller,
    account_id: str,
    name: str,
    reference: str,
    image: images.StoredImage,
    accept: Sequence[str],
) -> images.StoredImage | None:
    """The manifest a registry pull of `reference` (found as `image`) answers with, or None when
    nothing the client accepts can be served."""
    by_digest = is_digest(reference)
    if not by_digest:
        served = converted(image, accept)
        if served is not None:
            return served
    if _servable_as_stored(image, accept, by_digest):
        return image
    if image.media_type == DOCKER_MANIFEST_LIST and accepts(DOCKER_MANIFEST, accept):
        child = _default_platform_child(image)
        if child is not None:
            _, served = await images.get_manifest(svc, caller, account_id, name, child, record_pull=False)
            return served
    return None
