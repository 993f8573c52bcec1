"""Manifest parsing and validation: OCI image-spec / distribution-spec v1.1 rules."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
from typing import Any

import botocore.session
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.core.registry import manifests as m
from dockyard.core.registry.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    DigestError,
    ManifestError,
    RepositoryNameError,
    accepts,
    compute_digest,
    is_digest,
    parse_manifest,
    validate_digest,
    validate_reference,
    validate_repository_name,
)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER_A = b"layer a"
LAYER_B = b"layer b, a bit longer"


def descriptor(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(content), "size": len(content), **extra}


def docker_manifest() -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor("application/vnd.docker.container.image.v1+json", CONFIG),
        "layers": [
            descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", LAYER_A),
            descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", LAYER_B),
        ],
    }


def oci_manifest(**extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", CONFIG),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", LAYER_A)],
        **extra,
    }


def oci_index(**extra: Any) -> dict[str, Any]:
    child = encode(oci_manifest())
    return {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, child, platform={"architecture": "amd64", "os": "linux"})],
        **extra,
    }


def docker_list() -> dict[str, Any]:
    child = encode(docker_manifest())
    platform = {"architecture": "arm64", "os": "linux", "variant": "v8"}
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [descriptor(DOCKER_MANIFEST, child, platform=platform)],
    }


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=3).encode()


def refused(data: bytes, content_type: str | None, code: str = "MANIFEST_INVALID", **kw: Any) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data, content_type, **kw)
    assert caught.value.code == code, caught.value
    return caught.value


# --- the four supported kinds ---------------------------------------------------------------


def test_docker_schema2_manifest() -> None:
    data = encode(docker_manifest())
    parsed = parse_manifest(data, DOCKER_MANIFEST)
    assert parsed.media_type == DOCKER_MANIFEST
    assert parsed.digest == digest_of(data) and parsed.size == len(data)
    assert parsed.config is not None and parsed.config.size == len(CONFIG)
    assert parsed.blob_digests() == [digest_of(CONFIG), digest_of(LAYER_A), digest_of(LAYER_B)]
    assert parsed.image_size() == len(LAYER_A) + len(LAYER_B)
    assert parsed.artifact_type == "application/vnd.docker.container.image.v1+json"
    assert parsed.manifests == () and parsed.subject is None and not parsed.is_index


def test_oci_manifest_with_subject_annotations_and_artifact_type() -> None:
    subject = descriptor(OCI_MANIFEST, b"the subject")
    document = oci_manifest(
        artifactType="application/vnd.example.sbom.v1",
        subject=subject,
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    )
    document["config"] = descriptor(OCI_EMPTY, b"{}")
    parsed = parse_manifest(encode(document), OCI_MANIFEST)
    assert parsed.artifact_type == "application/vnd.example.sbom.v1"
    assert parsed.subject == m.Descriptor(OCI_MANIFEST, subject["digest"], subject["size"])
    assert parsed.annotations == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}


def test_oci_artifact_type_falls_back_to_config_media_type() -> None:
    document = oci_manifest(artifactType="")
    document["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json"
    parsed = parse_manifest(encode(document), OCI_MANIFEST)
    assert parsed.artifact_type == "application/vnd.cncf.helm.config.v1+json"


def test_oci_index() -> None:
    data = encode(oci_index(annotations={"a": "b"}))
    parsed = parse_manifest(data, OCI_INDEX)
    assert parsed.is_index and parsed.config is None and parsed.layers == ()
    assert parsed.blob_digests() == []
    child = parsed.manifests[0]
    assert child.platform == {"architecture": "amd64", "os": "linux"}
    assert parsed.child_digests() == [child.digest]
    assert parsed.artifact_type is None
    assert parsed.annotations == {"a": "b"}


def test_index_artifact_type_is_kept() -> None:
    parsed = parse_manifest(encode(oci_index(artifactType="application/vnd.example+type")), OCI_INDEX)
    assert parsed.artifact_type == "application/vnd.example+type"


def test_index_image_size_is_the_largest_child() -> None:
    document = oci_index()
    document["manifests"].append(descriptor(OCI_MANIFEST, b"another child"))
    parsed = parse_manifest(encode(document), OCI_INDEX)
    first, second = parsed.child_digests()
    assert parsed.image_size({first: 10, second: 25}) == 25
    assert parsed.image_size({first: 10}) == 10
    assert parsed.image_size() == 0


def test_docker_manifest_list() -> None:
    parsed = parse_manifest(encode(docker_list()), DOCKER_MANIFEST_LIST)
    assert parsed.is_index and parsed.artifact_type is None
    assert parsed.manifests[0].platform == {"architecture": "arm64", "os": "linux", "variant": "v8"}


def test_subject_is_not_read_from_docker_manifests() -> None:
    document = docker_manifest()
    document["subject"] = descriptor(OCI_MANIFEST, b"x")
    assert parse_manifest(encode(document), DOCKER_MANIFEST).subject is None


def test_embedded_data_is_checked() -> None:
    document = oci_manifest()
    document["config"] = descriptor(OCI_EMPTY, b"{}", data=base64.b64encode(b"{}").decode())
    assert parse_manifest(encode(document), OCI_MANIFEST).config is not None
    document["config"]["data"] = base64.b64encode(b"[]").decode()
    assert "does not match" in refused(encode(document), OCI_MANIFEST).detail
    document["config"]["data"] = "not base64!"
    assert "base64" in refused(encode(document), OCI_MANIFEST).detail


def test_unknown_fields_are_ignored() -> None:
    document = oci_manifest(somethingNew={"x": 1})
    document["layers"][0]["future"] = True
    assert parse_manifest(encode(document), OCI_MANIFEST).media_type == OCI_MANIFEST


def test_empty_layers_are_allowed() -> None:
    document = oci_manifest()
    document["layers"] = []
    parsed = parse_manifest(encode(document), OCI_MANIFEST)
    assert parsed.image_size() == 0 and parsed.blob_digests() == [digest_of(CONFIG)]


def test_digest_covers_exact_bytes() -> None:
    compact = json.dumps(oci_manifest(), separators=(",", ":")).encode()
    pretty = encode(oci_manifest())
    assert parse_manifest(compact, OCI_MANIFEST).digest != parse_manifest(pretty, OCI_MANIFEST).digest


# --- media type resolution ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [OCI_MANIFEST, f"{OCI_MANIFEST}; charset=utf-8", OCI_MANIFEST.upper(), f" {OCI_MANIFEST} ", "", None],
)
def test_content_type_parameters_and_case_are_ignored(content_type: str | None) -> None:
    assert parse_manifest(encode(oci_manifest()), content_type).media_type == OCI_MANIFEST


@pytest.mark.parametrize("content_type", ["application/json", "application/octet-stream"])
def test_untyped_content_types_let_the_document_decide(content_type: str) -> None:
    assert parse_manifest(encode(docker_manifest()), content_type).media_type == DOCKER_MANIFEST


def test_layout_decides_without_media_types() -> None:
    manifest = oci_manifest()
    del manifest["mediaType"]
    index = oci_index()
    del index["mediaType"]
    assert parse_manifest(encode(manifest), None).media_type == OCI_MANIFEST
    assert parse_manifest(encode(index), "").media_type == OCI_INDEX


def test_layout_inference_can_be_turned_off_like_ecr() -> None:
    manifest = oci_manifest()
    del manifest["mediaType"]
    error = refused(encode(manifest), None, infer_from_layout=False)
    assert error.message == "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'"
    assert parse_manifest(encode(manifest), OCI_MANIFEST, infer_from_layout=False).media_type == OCI_MANIFEST


def test_oci_manifest_without_media_type_field_uses_content_type() -> None:
    manifest = oci_manifest()
    del manifest["mediaType"]
    assert parse_manifest(encode(manifest), OCI_MANIFEST).media_type == OCI_MANIFEST


def test_ambiguous_document_is_refused() -> None:
    document = oci_manifest()
    del document["mediaType"]
    document["manifests"] = []
    assert "ambiguous" in refused(encode(document), None).detail


def test_nothing_to_go_by_is_refused() -> None:
    refused(b'{"schemaVersion": 2}', None)


def test_media_type_must_match_content_type() -> None:
    error = refused(encode(docker_manifest()), OCI_MANIFEST)
    assert error.detail == f"mediaType in manifest should be '{OCI_MANIFEST}' not '{DOCKER_MANIFEST}'"


def test_docker_manifest_needs_its_media_type_field() -> None:
    document = docker_manifest()
    del document["mediaType"]
    assert refused(encode(document), DOCKER_MANIFEST).detail.endswith("not ''")
    list_document = docker_list()
    del list_document["mediaType"]
    refused(encode(list_document), DOCKER_MANIFEST_LIST)


def test_index_with_image_fields_is_refused() -> None:
    document = oci_index(layers=[])
    assert "expected index" in refused(encode(document), OCI_INDEX).detail


def test_manifest_with_index_fields_is_refused() -> None:
    document = oci_manifest(manifests=[])
    assert "expected manifest" in refused(encode(document), OCI_MANIFEST).detail


@pytest.mark.parametrize(
    ("content_type", "document"),
    [
        ("application/vnd.docker.distribution.manifest.v1+prettyjws", {"schemaVersion": 1}),
        ("application/vnd.docker.distribution.manifest.v1+json", {"schemaVersion": 1}),
        ("", {"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}),
        (OCI_MANIFEST, {"schemaVersion": 1}),
    ],
)
def test_schema1_is_refused(content_type: str, document: dict[str, Any]) -> None:
    error = refused(json.dumps(document).encode(), content_type, "UNSUPPORTED")
    assert "Schema 1" in error.message


@pytest.mark.parametrize(
    ("content_type", "document"),
    [
        ("application/vnd.oci.artifact.manifest.v1+json", oci_manifest()),
        ("", {"schemaVersion": 2, "mediaType": "application/vnd.example.manifest+json"}),
    ],
)
def test_unknown_manifest_types_are_unsupported(content_type: str, document: dict[str, Any]) -> None:
    error = refused(encode(document), content_type, "UNSUPPORTED")
    assert error.message.startswith("Unsupported manifest type")


# --- structural validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'"a string"',
        b"null",
        b'{"schemaVersion": NaN}',
        b"\xff\xfe{}",
        json.dumps(oci_manifest()).encode() + b"garbage",
    ],
)
def test_malformed_documents(data: bytes) -> None:
    refused(data, OCI_MANIFEST)


@pytest.mark.parametrize("version", [None, "2", True, 2.0, 3, 0])
def test_schema_version_must_be_integer_two(version: Any) -> None:
    document = oci_manifest(schemaVersion=version)
    if version is None:
        del document["schemaVersion"]
    assert "schemaVersion" in refused(encode(document), OCI_MANIFEST).detail


def test_media_type_field_must_be_a_string() -> None:
    refused(encode(oci_manifest(mediaType=5)), OCI_MANIFEST)


def _broken(path: tuple[Any, ...], value: Any) -> bytes:
    document = copy.deepcopy(oci_manifest())
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return encode(document)


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("config",), _DELETE, "config"),
        (("config",), "sha256:x", "config"),
        (("layers",), _DELETE, "layers"),
        (("layers",), {}, "layers"),
        (("layers", 0), "x", "layers[0]"),
        (("config", "mediaType"), _DELETE, "config.mediaType"),
        (("config", "mediaType"), "not a media type", "config.mediaType"),
        (("config", "mediaType"), "application/", "config.mediaType"),
        (("config", "digest"), _DELETE, "config.digest"),
        (("config", "digest"), "sha256:" + "A" * 64, "config.digest"),
        (("config", "digest"), "sha256:abc", "config.digest"),
        (("config", "digest"), "md5:" + "a" * 32, "config.digest"),
        (("config", "digest"), 12, "config.digest"),
        (("layers", 0, "size"), _DELETE, "layers[0].size"),
        (("layers", 0, "size"), -1, "layers[0].size"),
        (("layers", 0, "size"), True, "layers[0].size"),
        (("layers", 0, "size"), 7.0, "layers[0].size"),
        (("layers", 0, "size"), "7", "layers[0].size"),
        (("layers", 0, "size"), 2**63, "layers[0].size"),
        (("layers", 0, "urls"), "http://x", "layers[0].urls"),
        (("layers", 0, "urls"), [1], "layers[0].urls"),
        (("layers", 0, "annotations"), {"a": 1}, "layers[0].annotations"),
        (("layers", 0, "annotations"), ["a"], "layers[0].annotations"),
        (("layers", 0, "artifactType"), "bad", "layers[0].artifactType"),
        (("artifactType",), "no slash", "artifactType"),
        (("artifactType",), 5, "artifactType"),
        (("annotations",), {"a": None}, "annotations"),
        (("subject",), {"mediaType": OCI_MANIFEST}, "subject.digest"),
    ],
)
def test_invalid_descriptors_and_fields(path: tuple[Any, ...], value: Any, where: str) -> None:
    error = refused(_broken(path, value), OCI_MANIFEST)
    assert error.detail.startswith(where), error.detail
    assert error.message == "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'"


def test_sha512_descriptors_are_accepted() -> None:
    document = oci_manifest()
    document["layers"][0]["digest"] = "sha512:" + hashlib.sha512(LAYER_A).hexdigest()
    assert parse_manifest(encode(document), OCI_MANIFEST).layers[0].digest.startswith("sha512:")


@pytest.mark.parametrize(
    ("platform", "ok"),
    [
        ({"architecture": "amd64", "os": "windows", "os.version": "10.0", "os.features": ["win32k"]}, True),
        ({"architecture": "arm", "os": "linux", "variant": "v7", "features": []}, True),
        ({"os": "linux"}, False),
        ({"architecture": "amd64", "os": 1}, False),
        ({"architecture": "amd64", "os": "linux", "os.features": "x"}, False),
        ({"architecture": "amd64", "os": "linux", "variant": 7}, False),
        ("linux/amd64", False),
    ],
)
def test_index_platforms(platform: Any, ok: bool) -> None:
    document = oci_index()
    document["manifests"][0]["platform"] = platform
    if ok:
        assert parse_manifest(encode(document), OCI_INDEX).manifests[0].platform == platform
    else:
        assert "platform" in refused(encode(document), OCI_INDEX).detail


def test_index_manifests_must_be_a_list() -> None:
    refused(encode(oci_index(manifests={"a": 1})), OCI_INDEX)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_manifest_error(data: bytes) -> None:
    for content_type in (None, OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST):
        with contextlib.suppress(ManifestError):
            parse_manifest(data, content_type)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
_fields = st.sampled_from(["schemaVersion", "mediaType", "config", "layers", "manifests", "subject", "annotations"])


@given(st.dictionaries(_fields, _json, max_size=7))
def test_arbitrary_documents_only_ever_raise_manifest_error(document: dict[str, Any]) -> None:
    data = json.dumps(document).encode()
    for content_type in (None, OCI_MANIFEST, OCI_INDEX):
        with contextlib.suppress(ManifestError):
            parse_manifest(data, content_type)


# --- digests, tags, references, names ----------------------------------------------------------


def test_compute_digest() -> None:
    assert compute_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert compute_digest(b"", "sha512").startswith("sha512:cf83e1357eefb8bd")
    with pytest.raises(DigestError):
        compute_digest(b"", "md5")


@pytest.mark.parametrize("digest", ["sha256:" + "a" * 64, "sha512:" + "0" * 128])
def test_valid_digests(digest: str) -> None:
    assert validate_digest(digest) == digest


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "SHA256:" + "a" * 64,
        "sha256" + "a" * 64,
        "sha384:" + "a" * 96,
        "blake3:" + "a" * 64,
        ":" + "a" * 64,
        "sha256:",
        "sha256:" + "a" * 64 + "\n",
        "",
        None,
        5,
    ],
)
def test_invalid_digests(digest: Any) -> None:
    with pytest.raises(DigestError) as caught:
        validate_digest(digest)
    assert caught.value.code == "DIGEST_INVALID"


@pytest.mark.parametrize("tag", ["latest", "v1.2.3", "_x", "A" * 128, "a-b_c.d", "0"])
def test_valid_tags(tag: str) -> None:
    assert validate_reference(tag) == tag
    assert not is_digest(tag)


@pytest.mark.parametrize("tag", ["", ".x", "-x", "A" * 129, "a/b", "a b", "ümlaut", "x\n"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(ManifestError) as caught:
        validate_reference(tag)
    assert caught.value.code == "TAG_INVALID"


def test_digest_references() -> None:
    digest = "sha256:" + "b" * 64
    assert is_digest(digest) and validate_reference(digest) == digest
    with pytest.raises(DigestError):
        validate_reference("sha256:nothex")


@pytest.mark.parametrize("name", ["ab", "team-a/web-app", "a__b", "a--b", "a---b", "a.b/c_d", "x/y/z", "a" * 256, "0a"])
def test_valid_repository_names(name: str) -> None:
    assert validate_repository_name(name) == name


PATTERN_MESSAGE = (
    "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
    "'must satisfy regular expression '[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*''"
)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Bad_Name!", PATTERN_MESSAGE),
        ("Team/App", PATTERN_MESSAGE),
        ("a___b", PATTERN_MESSAGE),
        ("a_-b", PATTERN_MESSAGE),
        ("_a", PATTERN_MESSAGE),
        ("a_", PATTERN_MESSAGE),
        ("a//b", PATTERN_MESSAGE),
        ("a/", PATTERN_MESSAGE),
        (
            "a",
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
            "'must have length greater than or equal to 2'",
        ),
        (
            "a" * 257,
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
            "'must have length less than or equal to 256'",
        ),
    ],
)
def test_invalid_repository_names_use_ecr_messages(name: str, message: str) -> None:
    with pytest.raises(RepositoryNameError) as caught:
        validate_repository_name(name)
    assert caught.value.message == message
    assert caught.value.code == "NAME_INVALID"


def test_repository_name_rule_matches_botocore_model() -> None:
    shape = botocore.session.get_session().get_service_model("ecr").shape_for("RepositoryName")
    assert shape.metadata["pattern"].replace("\\/", "/") == m.ECR_REPOSITORY_NAME_PATTERN
    assert shape.metadata["min"] == m.ECR_REPOSITORY_NAME_MIN
    assert shape.metadata["max"] == m.ECR_REPOSITORY_NAME_MAX


# --- content negotiation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ([OCI_MANIFEST], True),
        ([f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"], True),
        ([DOCKER_MANIFEST, OCI_MANIFEST], True),
        ([DOCKER_MANIFEST], False),
        (["application/json"], False),
        (["*/*"], True),
        (["application/*"], True),
        (["text/*"], False),
        ([f"{OCI_MANIFEST};q=0"], False),
        ([f"*/*, {OCI_MANIFEST};q=0"], False),
        ([f"*/*;q=0, {OCI_MANIFEST}"], True),
        ([f"{OCI_MANIFEST.upper()}"], True),
        ([f"{OCI_MANIFEST}; q=0.5"], True),
        ([f"{OCI_MANIFEST};q=bogus"], False),
        ([], True),
        ([""], True),
    ],
)
def test_accepts(accept: list[str], expected: bool) -> None:
    assert accepts(OCI_MANIFEST, accept) is expected


def test_max_manifest_size() -> None:
    assert m.MAX_MANIFEST_SIZE == 4 * 1024 * 1024
