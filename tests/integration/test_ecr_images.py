"""The ECR image API through boto3 and the AWS CLI: PutImage, ListImages, DescribeImages,
BatchGetImage and BatchDeleteImage, their pagination and their errors."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.ecr_support import error_of, push, repository, upload_missing_blobs
from tests.support.clients import AwsCli, Boto3Clients, Skopeo
from tests.support.images import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    BuiltImage,
    build_image,
    build_index,
    canonical_json,
    sha256_digest,
)
from tests.support.server import DockyardServer


@pytest.fixture
def ecr(boto3_client: Boto3Clients) -> Any:
    return boto3_client("ecr")


@pytest.fixture
def repo(ecr: Any) -> Iterator[str]:
    with repository(ecr, "images") as name:
        yield name


def variants(tmp_path: Path, count: int) -> list[BuiltImage]:
    """`count` distinct images sharing one small layer (their configs differ)."""
    return [
        build_image(tmp_path / "layout", f"v{i}", [256], seed="shared", labels={"variant": str(i)})
        for i in range(count)
    ]


def test_put_image_is_listed_described_and_got(
    ecr: Any, repo: str, tmp_path: Path, dockyard_server: DockyardServer
) -> None:
    image = build_image(tmp_path / "layout", "v1", [2048, 512])

    put = push(ecr, repo, image, "v1")

    assert put == {
        "registryId": dockyard_server.account_id,
        "repositoryName": repo,
        "imageId": {"imageDigest": image.digest, "imageTag": "v1"},
        "imageManifest": image.manifest.data.decode(),
        "imageManifestMediaType": OCI_MANIFEST,
    }
    assert ecr.list_images(repositoryName=repo)["imageIds"] == [{"imageDigest": image.digest, "imageTag": "v1"}]
    detail = ecr.describe_images(repositoryName=repo)["imageDetails"][0]
    pushed_at = detail.pop("imagePushedAt")
    assert abs(pushed_at - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=5)
    assert detail == {
        "registryId": dockyard_server.account_id,
        "repositoryName": repo,
        "imageDigest": image.digest,
        "imageTags": ["v1"],
        "imageSizeInBytes": image.size,
        "imageManifestMediaType": OCI_MANIFEST,
        "artifactMediaType": OCI_CONFIG,
        "imageStatus": "ACTIVE",
    }

    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert got["failures"] == []
    assert got["images"] == [
        {
            "registryId": dockyard_server.account_id,
            "repositoryName": repo,
            "imageId": {"imageDigest": image.digest, "imageTag": "v1"},
            "imageManifest": image.manifest.data.decode(),
            "imageManifestMediaType": OCI_MANIFEST,
        }
    ]
    # BatchGetImage is a pull: the image now has a last recorded pull time.
    pulled = ecr.describe_images(repositoryName=repo)["imageDetails"][0]["lastRecordedPullTime"]
    assert abs(pulled - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=5)


def test_retagging_with_put_image(ecr: Any, repo: str, tmp_path: Path) -> None:
    image = build_image(tmp_path / "layout", "v1", [128])
    push(ecr, repo, image, "v1")
    ecr.put_image(repositoryName=repo, imageManifest=image.manifest.data.decode(), imageTag="stable")

    listed = ecr.list_images(repositoryName=repo)["imageIds"]
    assert sorted(listed, key=lambda i: i["imageTag"]) == [
        {"imageDigest": image.digest, "imageTag": "stable"},
        {"imageDigest": image.digest, "imageTag": "v1"},
    ]
    details = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert len(details) == 1 and details[0]["imageTags"] == ["stable", "v1"]
    # By digest, BatchGetImage answers once per tag.
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": image.digest}])["images"]
    assert sorted(i["imageId"]["imageTag"] for i in got) == ["stable", "v1"]


def test_put_image_errors(ecr: Any, repo: str, tmp_path: Path, dockyard_server: DockyardServer) -> None:
    account = dockyard_server.account_id
    image = build_image(tmp_path / "layout", "v1", [128])
    manifest = image.manifest.data.decode()

    with pytest.raises(ClientError) as missing_layers:
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")
    # Java prints the list: [sha256:..., sha256:...] (config first, then the layers).
    missing = ", ".join([image.config.digest, image.layers[0].digest])
    assert error_of(missing_layers) == (
        "LayersNotFoundException",
        f"Layers with digests '[{missing}]' required for pushing image into repository with name '{repo}' "
        f"in the registry with id '{account}' do not exist",
    )

    push(ecr, repo, image, "v1")
    with pytest.raises(ClientError) as again:
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")
    assert error_of(again) == (
        "ImageAlreadyExistsException",
        f"Image with digest '{image.digest}' and tag 'v1' already exists in the repository with name '{repo}' "
        f"in registry with id '{account}'",
    )

    wrong = "sha256:" + "0" * 64
    with pytest.raises(ClientError) as mismatch:
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v2", imageDigest=wrong)
    assert error_of(mismatch) == (
        "ImageDigestDoesNotMatchException",
        f"Invalid parameter at 'imageDigest' failed to satisfy constraint: 'Digest {wrong} does not match the "
        f"computed digest {image.digest}'",
    )

    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": wrong, "size": 10}],
    }
    with pytest.raises(ClientError) as children:
        ecr.put_image(repositoryName=repo, imageManifest=canonical_json(index).decode(), imageTag="multi")
    assert error_of(children) == (
        "ReferencedImagesNotFoundException",
        f"Manifests with digests '[{wrong}]' required for pushing image into repository with name '{repo}' "
        f"in the registry with id '{account}' do not exist",
    )

    untyped = json.dumps({"schemaVersion": 2, "config": image.manifest_json["config"], "layers": []})
    with pytest.raises(ClientError) as no_type:
        ecr.put_image(repositoryName=repo, imageManifest=untyped)
    assert error_of(no_type) == (
        "InvalidParameterException",
        "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'",
    )
    # With imageManifestMediaType the same document is an image.
    typed = ecr.put_image(repositoryName=repo, imageManifest=untyped, imageManifestMediaType=OCI_MANIFEST)
    assert typed["image"]["imageManifestMediaType"] == OCI_MANIFEST

    with pytest.raises(ClientError) as bad_tag:
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="no spaces")
    assert error_of(bad_tag)[0] == "InvalidParameterException"

    with pytest.raises(ClientError) as no_repo:
        ecr.put_image(repositoryName=f"{repo}-missing", imageManifest=manifest, imageTag="v1")
    assert error_of(no_repo) == (
        "RepositoryNotFoundException",
        f"The repository with name '{repo}-missing' does not exist in the registry with id '{account}'",
    )


def test_index_size_and_media_types(ecr: Any, repo: str, tmp_path: Path) -> None:
    index = build_index(tmp_path / "layout", "multi", layers=[1024, 300])
    for image in index.images:
        push(ecr, repo, image)
    ecr.put_image(repositoryName=repo, imageManifest=index.index.data.decode(), imageTag="multi")

    detail = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "multi"}])["imageDetails"][0]
    assert detail["imageManifestMediaType"] == OCI_INDEX
    assert "artifactMediaType" not in detail
    assert detail["imageSizeInBytes"] == max(image.size for image in index.images)

    # A platform manifest an index still needs cannot be deleted by itself.
    child = index.images[0].digest
    answer = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": child}])
    assert answer["imageIds"] == []
    assert answer["failures"][0]["imageId"] == {"imageDigest": child}
    assert answer["failures"][0]["failureCode"] == "ImageReferencedByManifestList"
    # Together with the index it can.
    both = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": child}, {"imageTag": "multi"}])
    assert both["failures"] == []
    assert {"imageDigest": index.digest, "imageTag": "multi"} in both["imageIds"]


def test_list_images_filters_by_tag_status(ecr: Any, repo: str, tmp_path: Path) -> None:
    first, second = variants(tmp_path, 2)
    push(ecr, repo, first, "latest")
    push(ecr, repo, second, "latest")  # moves the tag: the first image is now untagged

    tagged = ecr.list_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageIds"]
    untagged = ecr.list_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})["imageIds"]
    everything = ecr.list_images(repositoryName=repo, filter={"tagStatus": "ANY"})["imageIds"]
    assert tagged == [{"imageDigest": second.digest, "imageTag": "latest"}]
    assert untagged == [{"imageDigest": first.digest}]
    assert everything == [{"imageDigest": first.digest}, {"imageDigest": second.digest, "imageTag": "latest"}]
    assert ecr.list_images(repositoryName=repo, filter={"imageStatus": "ARCHIVED"})["imageIds"] == []

    described = ecr.describe_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})["imageDetails"]
    assert [d["imageDigest"] for d in described] == [first.digest]
    assert "imageTags" not in described[0]


def test_paginators_walk_every_page(ecr: Any, repo: str, tmp_path: Path) -> None:
    images = variants(tmp_path, 5)
    for number, image in enumerate(images):
        push(ecr, repo, image, f"t{number}")
    push(ecr, repo, images[0], "again")  # a second tag: six list entries, five images

    pages = list(ecr.get_paginator("list_images").paginate(repositoryName=repo, PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3 and all("nextToken" in page for page in pages[:-1])
    listed = [entry for page in pages for entry in page["imageIds"]]
    assert len(listed) == 6 and len({json.dumps(e, sort_keys=True) for e in listed}) == 6

    pages = list(ecr.get_paginator("describe_images").paginate(repositoryName=repo, PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3
    assert sorted(d["imageDigest"] for page in pages for d in page["imageDetails"]) == sorted(i.digest for i in images)

    # By hand: a token continues where the previous page ended.
    first = ecr.list_images(repositoryName=repo, maxResults=4)
    rest = ecr.list_images(repositoryName=repo, maxResults=4, nextToken=first["nextToken"])
    assert "nextToken" not in rest
    assert len(first["imageIds"]) + len(rest["imageIds"]) == 6

    with pytest.raises(ClientError) as bad_token:
        ecr.list_images(repositoryName=repo, nextToken="not-a-token")
    assert error_of(bad_token)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as both:
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "t1"}], maxResults=2)
    assert error_of(both)[0] == "InvalidParameterException"


def test_describe_images_of_missing_images(ecr: Any, repo: str, dockyard_server: DockyardServer) -> None:
    with pytest.raises(ClientError) as by_tag:
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "nope"}])
    assert error_of(by_tag) == (
        "ImageNotFoundException",
        f"The image with imageId {{imageDigest:'null', imageTag:'nope'}} does not exist within the repository "
        f"with name '{repo}' in the registry with id '{dockyard_server.account_id}'",
    )
    digest = "sha256:" + "a" * 64
    with pytest.raises(ClientError) as by_digest:
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": digest}])
    assert f"{{imageDigest:'{digest}', imageTag:'null'}}" in error_of(by_digest)[1]
    with pytest.raises(ClientError) as no_repo:
        ecr.describe_images(repositoryName=f"{repo}-gone")
    assert error_of(no_repo)[0] == "RepositoryNotFoundException"


def test_batch_get_image_failures(ecr: Any, repo: str, tmp_path: Path) -> None:
    image = build_image(tmp_path / "layout", "v1", [64])
    push(ecr, repo, image, "v1")
    other = "sha256:" + "a" * 64

    answer = ecr.batch_get_image(
        repositoryName=repo,
        imageIds=[
            {"imageTag": "missing"},
            {"imageDigest": "not-a-digest"},
            {},
            {"imageTag": "v1", "imageDigest": other},
            {"imageTag": "v1", "imageDigest": image.digest},
        ],
    )
    assert answer["images"][0]["imageId"] == {"imageDigest": image.digest, "imageTag": "v1"}
    assert answer["failures"] == [
        {
            "imageId": {"imageTag": "missing"},
            "failureCode": "ImageNotFound",
            "failureReason": "Requested image not found",
        },
        {
            "imageId": {"imageDigest": "not-a-digest"},
            "failureCode": "InvalidImageDigest",
            "failureReason": "Invalid request parameters: image digest should satisfy the regex "
            "'[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
        },
        {
            "imageId": {},
            "failureCode": "MissingDigestAndTag",
            "failureReason": "Invalid request parameters: both tag and digest cannot be null",
        },
        {
            "imageId": {"imageDigest": other, "imageTag": "v1"},
            "failureCode": "ImageTagDoesNotMatchDigest",
            "failureReason": "Invalid request parameters: given tag does not map to the given digest",
        },
    ]
    oci = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}], acceptedMediaTypes=[OCI_MANIFEST])
    assert oci["images"][0]["imageManifest"] == image.manifest.data.decode()


def test_batch_get_image_converts_by_tag_only(ecr: Any, repo: str, tmp_path: Path) -> None:
    """ECR's conversion table: by tag, an OCI image manifest is served as Docker schema 2 to a
    client that accepts only that (and the other way round); by digest nothing is converted, and
    what is not converted is served as stored, for the caller to judge its media type."""
    image = build_image(tmp_path / "layout", "v1", [64])
    push(ecr, repo, image, "v1")
    docker = "application/vnd.docker.distribution.manifest.v2+json"
    by_tag = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}], acceptedMediaTypes=[docker])
    served = by_tag["images"][0]
    assert served["imageManifestMediaType"] == docker and by_tag["failures"] == []
    converted = json.loads(served["imageManifest"])
    original = json.loads(image.manifest.data)
    assert converted["mediaType"] == docker
    assert converted["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert [layer["digest"] for layer in converted["layers"]] == [layer["digest"] for layer in original["layers"]]
    assert {layer["mediaType"] for layer in converted["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    }

    by_digest = ecr.batch_get_image(
        repositoryName=repo, imageIds=[{"imageDigest": image.digest}], acceptedMediaTypes=[docker]
    )
    assert by_digest["failures"] == []
    assert by_digest["images"][0]["imageManifest"] == image.manifest.data.decode()
    assert by_digest["images"][0]["imageManifestMediaType"] == OCI_MANIFEST
    # The converted manifest goes back in as a Docker image of its own.
    ecr.put_image(repositoryName=repo, imageManifest=served["imageManifest"], imageTag="docker")
    back = ecr.batch_get_image(
        repositoryName=repo, imageIds=[{"imageTag": "docker"}], acceptedMediaTypes=[OCI_MANIFEST]
    )["images"][0]
    assert back["imageManifestMediaType"] == OCI_MANIFEST
    assert json.loads(back["imageManifest"])["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"


def test_batch_delete_image(ecr: Any, repo: str, tmp_path: Path) -> None:
    first, second = variants(tmp_path, 2)
    push(ecr, repo, first, "a")
    ecr.put_image(repositoryName=repo, imageManifest=first.manifest.data.decode(), imageTag="b")
    push(ecr, repo, second, "c")

    # A tag of an image with other tags: only the tag goes.
    answer = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "a"}])
    assert (answer["imageIds"], answer["failures"]) == ([{"imageDigest": first.digest, "imageTag": "a"}], [])
    assert ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": first.digest}])["imageDetails"][0][
        "imageTags"
    ] == ["b"]
    # Its last tag: the image goes too, as ECR deletes it.
    ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "b"}])
    assert [i["imageDigest"] for i in ecr.list_images(repositoryName=repo)["imageIds"]] == [second.digest]

    missing = "sha256:" + "b" * 64
    answer = ecr.batch_delete_image(
        repositoryName=repo,
        imageIds=[{"imageDigest": second.digest}, {"imageTag": "c"}, {"imageTag": "gone"}, {"imageDigest": missing}],
    )
    # The tag id names what the digest id already deleted: no failure for it.
    assert answer["imageIds"] == [{"imageDigest": second.digest, "imageTag": "c"}]
    assert answer["failures"] == [
        {"imageId": {"imageTag": "gone"}, "failureCode": "ImageNotFound", "failureReason": "Requested image not found"},
        {
            "imageId": {"imageDigest": missing},
            "failureCode": "ImageNotFound",
            "failureReason": "Requested image not found",
        },
    ]
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []

    # Ids ECR refuses before looking them up, and a tag that names another image: all failures,
    # nothing deleted.
    push(ecr, repo, first, "a")
    refused = ecr.batch_delete_image(
        repositoryName=repo,
        imageIds=[{"imageDigest": "not-a-digest"}, {}, {"imageTag": "a", "imageDigest": second.digest}],
    )
    assert refused == {
        "imageIds": [],
        "failures": [
            {
                "imageId": {"imageDigest": "not-a-digest"},
                "failureCode": "InvalidImageDigest",
                "failureReason": "Invalid request parameters: image digest should satisfy the regex "
                "'[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
            },
            {
                "imageId": {},
                "failureCode": "MissingDigestAndTag",
                "failureReason": "Invalid request parameters: both tag and digest cannot be null",
            },
            {
                "imageId": {"imageDigest": second.digest, "imageTag": "a"},
                "failureCode": "ImageTagDoesNotMatchDigest",
                "failureReason": "Invalid request parameters: given tag does not map to the given digest",
            },
        ],
        "ResponseMetadata": refused["ResponseMetadata"],
    }
    assert ecr.list_images(repositoryName=repo)["imageIds"] == [{"imageDigest": first.digest, "imageTag": "a"}]

    with pytest.raises(ClientError) as too_many:
        ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": f"t{i}"} for i in range(101)])
    assert error_of(too_many) == (
        "InvalidParameterException",
        "Invalid parameter at 'imageIds' failed to satisfy constraint: 'Member must have length less than or equal "
        "to 100'",
    )


def test_registry_pushes_are_visible_at_once(
    ecr: Any, repo: str, tmp_path: Path, aws: AwsCli, skopeo: Skopeo, dockyard_server: DockyardServer
) -> None:
    skopeo.login(dockyard_server.registry, aws("ecr", "get-login-password"))
    image = build_image(tmp_path / "layout", "v1", [1024])
    skopeo.copy(image, f"docker://{dockyard_server.registry}/{repo}:v1")
    assert ecr.list_images(repositoryName=repo)["imageIds"] == [{"imageDigest": image.digest, "imageTag": "v1"}]

    # ... and the other way round: PutImage's tag is pullable, byte for byte.
    ecr.put_image(repositoryName=repo, imageManifest=image.manifest.data.decode(), imageTag="v2")
    served = skopeo.inspect_raw(f"docker://{dockyard_server.registry}/{repo}:v2")
    assert served == image.manifest.data and sha256_digest(served) == image.digest


# --- the same through the AWS CLI -------------------------------------------------------------


def test_image_commands_with_the_cli(aws: AwsCli, ecr: Any, repo: str, tmp_path: Path) -> None:
    images = variants(tmp_path, 3)
    for image in images:
        upload_missing_blobs(ecr, repo, image)
    manifest_file = tmp_path / "manifest.json"
    for number, image in enumerate(images):
        manifest_file.write_bytes(image.manifest.data)
        put = aws("ecr", "put-image", "--repository-name", repo, "--image-tag", f"v{number}",
                  "--image-manifest", f"file://{manifest_file}")  # fmt: skip
        assert put["image"]["imageId"] == {"imageDigest": image.digest, "imageTag": f"v{number}"}

    # Auto-pagination: one page of one entry at a time, all entries in the output.
    listed = aws("ecr", "list-images", "--repository-name", repo, "--page-size", "1")
    assert sorted(i["imageTag"] for i in listed["imageIds"]) == ["v0", "v1", "v2"]
    described = aws("ecr", "describe-images", "--repository-name", repo, "--page-size", "2")
    assert len(described["imageDetails"]) == 3
    truncated = aws("ecr", "list-images", "--repository-name", repo, "--max-items", "2")
    assert len(truncated["imageIds"]) == 2 and truncated["NextToken"]
    rest = aws("ecr", "list-images", "--repository-name", repo, "--starting-token", truncated["NextToken"])
    assert len(rest["imageIds"]) == 1

    got = aws("ecr", "batch-get-image", "--repository-name", repo, "--image-ids", "imageTag=v1")
    assert got["images"][0]["imageManifest"] == images[1].manifest.data.decode()
    deleted = aws("ecr", "batch-delete-image", "--repository-name", repo, "--image-ids", "imageTag=v1", "imageTag=v9")
    assert deleted["imageIds"] == [{"imageDigest": images[1].digest, "imageTag": "v1"}]
    assert deleted["failures"] == [
        {"imageId": {"imageTag": "v9"}, "failureCode": "ImageNotFound", "failureReason": "Requested image not found"}
    ]
    missing = aws("ecr", "describe-images", "--repository-name", repo, "--image-ids", "imageTag=v1", check=False)
    assert missing.returncode == 255
    assert "An error occurred (ImageNotFoundException) when calling the DescribeImages operation" in missing.stderr
