"""The pure rules behind the ECR API: resource tags, tag mutability, encryption, creation template
choice, image ids, manifest conversion, layer part rules and download tokens."""

from __future__ import annotations

import json

import pytest

from dockyard.auth.tokens import sign
from dockyard.core.errors import (
    AccessDeniedException,
    InvalidLayerPartException,
    InvalidParameterException,
    InvalidTagParameterException,
    LayerPartTooSmallException,
    LimitExceededException,
    TooManyTagsException,
)
from dockyard.core.operations.creation_templates import Template, choose_template
from dockyard.core.registry import resource_tags, uploads
from dockyard.core.registry.image_details import BAD_DIGEST, MISSING_ID, ImageId
from dockyard.core.registry.images import _tag_is_immutable
from dockyard.core.registry.layers import download_token, read_download_token
from dockyard.core.registry.manifests import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, convert_manifest
from dockyard.core.registry.repositories import Repository, check_encryption, check_tag_mutability

SECRET = b"s" * 32
DIGEST = "sha256:" + "a" * 64


# --- resource tags ----------------------------------------------------------------------------


def test_tags_keep_the_last_value_of_a_key() -> None:
    tags = [{"Key": "team", "Value": "a"}, {"Key": "env", "Value": ""}, {"Key": "team", "Value": "b"}]
    assert resource_tags.normalise(tags) == {"team": "b", "env": ""}


@pytest.mark.parametrize(
    "tag",
    [
        {"Key": "", "Value": "v"},
        {"Key": "k" * 129, "Value": "v"},
        {"Key": "aws:reserved", "Value": "v"},
        {"Key": "AWS:Reserved", "Value": "v"},
        {"Key": "semi;colon", "Value": "v"},
        {"Key": "k", "Value": "v" * 257},
        {"Key": "k", "Value": "back\\slash"},
    ],
)
def test_malformed_tags_are_refused(tag: dict[str, str]) -> None:
    with pytest.raises(InvalidTagParameterException):
        resource_tags.normalise([tag])


def test_tags_allow_what_aws_allows() -> None:
    tag = {"Key": "k" * 128, "Value": "Zürich + 1 = 2 _ . : / @ " + "v" * 200}
    assert resource_tags.normalise([tag]) == {tag["Key"]: tag["Value"]}


def test_at_most_fifty_tags() -> None:
    resource_tags.check_count(50)
    with pytest.raises(TooManyTagsException):
        resource_tags.check_count(51)


# --- repository settings ----------------------------------------------------------------------


def test_exclusion_filters_go_with_the_exclusion_settings() -> None:
    filters = [{"filterType": "WILDCARD", "filter": "dev-*"}]
    assert check_tag_mutability("IMMUTABLE_WITH_EXCLUSION", filters) == filters
    assert check_tag_mutability("MUTABLE", None) == []
    with pytest.raises(InvalidParameterException):
        check_tag_mutability("MUTABLE_WITH_EXCLUSION", None)
    with pytest.raises(InvalidParameterException):
        check_tag_mutability("IMMUTABLE", filters)


@pytest.mark.parametrize(
    ("mutability", "tag", "immutable"),
    [
        ("MUTABLE", "v1", False),
        ("IMMUTABLE", "latest", True),
        ("IMMUTABLE_WITH_EXCLUSION", "dev-1", False),
        ("IMMUTABLE_WITH_EXCLUSION", "v1", True),
        ("MUTABLE_WITH_EXCLUSION", "dev-1", True),
        ("MUTABLE_WITH_EXCLUSION", "v1", False),
    ],
)
def test_which_tags_are_immutable(mutability: str, tag: str, immutable: bool) -> None:
    exclusions = '[{"filterType": "WILDCARD", "filter": "dev-*"}]'
    assert _tag_is_immutable(mutability, exclusions, tag) is immutable


def test_encryption_settings() -> None:
    assert check_encryption("AES256", None, "123456789012", "us-east-1") is None
    with pytest.raises(InvalidParameterException):
        check_encryption("AES256", "arn:aws:kms:us-east-1:123456789012:key/x", "123456789012", "us-east-1")
    given = "arn:aws:kms:us-east-1:123456789012:key/mine"
    assert check_encryption("KMS", given, "123456789012", "us-east-1") == given
    default = check_encryption("KMS", None, "123456789012", "us-east-1")
    assert default == check_encryption("KMS_DSSE", None, "123456789012", "us-east-1")
    assert default is not None and default.startswith("arn:aws:kms:us-east-1:123456789012:key/")


# --- creation templates -----------------------------------------------------------------------


def template(prefix: str, applied_for: tuple[str, ...] = ("CREATE_ON_PUSH",)) -> Template:
    return Template(
        prefix=prefix,
        description=None,
        encryption_type="AES256",
        kms_key=None,
        resource_tags=[],
        image_tag_mutability="MUTABLE",
        exclusion_filters=[],
        repository_policy=None,
        lifecycle_policy=None,
        applied_for=list(applied_for),
        custom_role_arn=None,
        created_at=0.0,
        updated_at=0.0,
    )


def test_the_longest_covering_prefix_wins_and_root_is_the_fallback() -> None:
    templates = [template("ROOT"), template("prod"), template("prod/team/"), template("prod/teamwork")]
    assert choose_template(templates, "prod/team/app", "CREATE_ON_PUSH") == templates[2]
    assert choose_template(templates, "prod/app", "CREATE_ON_PUSH") == templates[1]
    assert choose_template(templates, "production/app", "CREATE_ON_PUSH") == templates[0]
    assert choose_template(templates, "prod", "CREATE_ON_PUSH") == templates[0]  # a prefix names a namespace
    assert choose_template(templates[1:], "other/app", "CREATE_ON_PUSH") is None


def test_templates_apply_to_their_scenarios_only() -> None:
    mirror = template("mirror", ("PULL_THROUGH_CACHE",))
    assert choose_template([mirror], "mirror/app", "CREATE_ON_PUSH") is None
    assert choose_template([mirror], "mirror/app", "PULL_THROUGH_CACHE") == mirror


# --- image ids --------------------------------------------------------------------------------


def test_image_id_problems() -> None:
    assert ImageId(None, None).problem() == MISSING_ID
    assert ImageId(None, "sha256").problem() == BAD_DIGEST
    assert ImageId("v1", "sha256:XYZ").problem() == BAD_DIGEST
    assert ImageId("v1", None).problem() is None
    assert ImageId(None, DIGEST).problem() is None
    assert ImageId("v1", DIGEST).shape() == {"imageDigest": DIGEST, "imageTag": "v1"}


# --- layer parts ------------------------------------------------------------------------------


def upload(size: int, parts: int, last_part_size: int | None) -> uploads.Upload:
    repo = Repository(
        id=1,
        account_id="123456789012",
        region="us-east-1",
        name="repo",
        created_at=0.0,
        image_tag_mutability="MUTABLE",
        tag_mutability_exclusions=None,
        scan_on_push=False,
        encryption_type="AES256",
        kms_key=None,
        policy_text=None,
    )
    return uploads.Upload("0f3c1a9e-0000-4000-8000-000000000000", repo, size, parts, last_part_size)


def test_part_rules() -> None:
    five_mib = uploads.MIN_PART_SIZE
    uploads._check_part_rules(upload(0, 0, None), 0, uploads.MAX_PART_SIZE - 1)
    uploads._check_part_rules(upload(five_mib, 1, five_mib), five_mib, five_mib)
    with pytest.raises(InvalidLayerPartException) as oversized:
        uploads._check_part_rules(upload(0, 0, None), 0, uploads.MAX_PART_SIZE)
    assert oversized.value.fields["lastValidByteReceived"] == 0
    with pytest.raises(InvalidLayerPartException):
        uploads._check_part_rules(upload(0, 0, None), 10, 9)
    # A small part followed by another is accepted here; CompleteLayerUpload refuses the upload.
    uploads._check_part_rules(upload(100, 1, 100), 100, 200)
    uploads.check_part_sizes(upload(100, 1, 100))
    with pytest.raises(LayerPartTooSmallException):
        uploads.check_part_sizes(upload(201, 2, uploads.SMALL_PART_FOLLOWED))
    with pytest.raises(LimitExceededException):
        uploads._check_part_rules(upload(1000 * five_mib, 1000, five_mib), 1000 * five_mib, 1000 * five_mib)


# --- manifest conversion (BatchGetImage by tag) ----------------------------------------------


def _manifest(media_type: str, config_type: str, layer_type: str, **extra: object) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": DIGEST, "size": 2},
        "layers": [{"mediaType": layer_type, "digest": DIGEST, "size": 3}],
        **extra,
    }
    return json.dumps(document).encode()


def test_docker_and_oci_image_manifests_convert_both_ways() -> None:
    docker = _manifest(
        DOCKER_MANIFEST,
        "application/vnd.docker.container.image.v1+json",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    )
    converted = convert_manifest(docker, DOCKER_MANIFEST, OCI_MANIFEST)
    assert converted is not None
    oci = json.loads(converted)
    assert oci["mediaType"] == OCI_MANIFEST
    assert oci["config"] == {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": DIGEST, "size": 2}
    assert oci["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    back = convert_manifest(converted, OCI_MANIFEST, DOCKER_MANIFEST)
    assert back is not None and json.loads(back) == json.loads(docker)


@pytest.mark.parametrize(
    ("data", "source", "target"),
    [
        # An artifact's blobs have no Docker counterpart.
        (_manifest(OCI_MANIFEST, "application/vnd.cncf.helm.config.v1+json", "application/tar"), OCI_MANIFEST,
         DOCKER_MANIFEST),
        # Docker schema 2 has no place for a subject.
        (_manifest(OCI_MANIFEST, "application/vnd.oci.image.config.v1+json",
                   "application/vnd.oci.image.layer.v1.tar+gzip",
                   subject={"mediaType": OCI_MANIFEST, "digest": DIGEST, "size": 1}), OCI_MANIFEST, DOCKER_MANIFEST),
        # Indexes, and targets that are not image manifests, are never converted.
        (b'{"schemaVersion":2,"mediaType":"' + OCI_INDEX.encode() + b'","manifests":[]}', OCI_INDEX, DOCKER_MANIFEST),
        (_manifest(OCI_MANIFEST, "application/vnd.oci.image.config.v1+json",
                   "application/vnd.oci.image.layer.v1.tar+gzip"), OCI_MANIFEST, OCI_INDEX),
    ],
)  # fmt: skip
def test_what_cannot_be_converted(data: bytes, source: str, target: str) -> None:
    assert convert_manifest(data, source, target) is None


# --- download tokens --------------------------------------------------------------------------


def test_download_tokens_name_their_blob_until_they_expire() -> None:
    token = download_token(SECRET, DIGEST, expires_at=1000)
    assert read_download_token(SECRET, token, now=999.5) == DIGEST
    with pytest.raises(AccessDeniedException, match="Request has expired"):
        read_download_token(SECRET, token, now=1000)


@pytest.mark.parametrize("mangle", ["other secret", "payload", "signature", "purpose", "garbage"])
def test_forged_download_tokens_are_refused(mangle: str) -> None:
    token = download_token(SECRET, DIGEST, expires_at=2**40)
    payload, _, signature = token.partition(".")
    forged = {
        "other secret": download_token(b"t" * 32, DIGEST, expires_at=2**40),
        "payload": payload[:-2] + ("AA" if not payload.endswith("AA") else "BB") + "." + signature,
        "signature": payload + "." + signature[::-1],
        "purpose": payload + "." + sign(payload.encode(), SECRET, purpose="ecr-authorization-token"),
        "garbage": "no dot here",
    }[mangle]
    with pytest.raises(AccessDeniedException):
        read_download_token(SECRET, forged, now=0)
