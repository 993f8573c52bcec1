"""ListImageReferrers through boto3 and the AWS CLI: the referrers of a subject image (the same
manifests the registry door's referrers API lists), the artifactTypes and artifactStatus filters,
maxResults / nextToken pages, ECR's errors, and authorisation as ecr:BatchGetImage."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.ecr_support import error_of, push, repository, upload_blob
from tests.support.clients import AwsCli, Boto3Clients
from tests.support.identities import Iam, access_denied, allow, aws_error, policy, root_identity, suffix
from tests.support.images import OCI_INDEX, OCI_MANIFEST, Blob, BuiltImage, build_image, canonical_json
from tests.support.registry_http import RegistryHttp
from tests.support.server import DockyardServer

SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"
CUSTOM_CONFIG = "application/vnd.dockyard.test.config.v1+json"
EMPTY = Blob("application/vnd.oci.empty.v1+json", b"{}")


def attach(
    ecr: Any,
    repo: str,
    subject: BuiltImage,
    payload: bytes,
    *,
    artifact_type: str | None,
    config: Blob = EMPTY,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """PutImage an artifact whose subject is `subject`; returns the referrer ECR should list."""
    layer = Blob("application/octet-stream", payload)
    for blob in (config, layer):
        with contextlib.suppress(ecr.exceptions.LayerAlreadyExistsException):
            upload_blob(ecr, repo, blob)
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        document["artifactType"] = artifact_type
    document |= {
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
        "subject": subject.manifest.descriptor(),
    }
    if annotations:
        document["annotations"] = annotations
    manifest = canonical_json(document)
    put = ecr.put_image(repositoryName=repo, imageManifest=manifest.decode())["image"]
    expected: dict[str, Any] = {
        "digest": put["imageId"]["imageDigest"],
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type or config.media_type,
        "size": len(manifest),
    }
    if annotations:
        expected["annotations"] = annotations
    return expected | {"artifactStatus": "ACTIVE"}


@pytest.fixture
def ecr(boto3_client: Boto3Clients) -> Any:
    return boto3_client("ecr")


@pytest.fixture
def subject_with_referrers(ecr: Any, tmp_path: Path) -> Any:
    """(repository, subject image, its four referrers in push order)."""
    with repository(ecr, "referrers") as repo:
        subject = build_image(tmp_path / "layout", "v1", [256])
        push(ecr, repo, subject, "v1")
        referrers = [
            attach(ecr, repo, subject, b"signature one", artifact_type=SIGNATURE),
            attach(ecr, repo, subject, b"sbom", artifact_type=SBOM, annotations={"org.example.kind": "spdx"}),
            attach(ecr, repo, subject, b"signature two", artifact_type=SIGNATURE),
            attach(ecr, repo, subject, b"typed by config", artifact_type=None, config=Blob(CUSTOM_CONFIG, b'{"a":1}')),
        ]
        other = build_image(tmp_path / "layout", "v2", [128])
        push(ecr, repo, other, "v2")
        attach(ecr, repo, other, b"another subject's", artifact_type=SIGNATURE)
        yield repo, subject, referrers


def listed(ecr: Any, repo: str, subject: BuiltImage, **kw: Any) -> dict[str, Any]:
    answer = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest}, **kw)
    answer.pop("ResponseMetadata")
    return dict(answer)


def test_referrers_filters_and_pages_through_boto3(
    ecr: Any, subject_with_referrers: Any, dockyard_server: DockyardServer
) -> None:
    repo, subject, referrers = subject_with_referrers
    assert listed(ecr, repo, subject) == {"referrers": referrers}

    # The registry door's referrers API lists the same manifests.
    door = RegistryHttp.for_server(dockyard_server).request("GET", f"/v2/{repo}/referrers/{subject.digest}")
    assert door.status_code == 200 and door.headers["Content-Type"] == OCI_INDEX
    assert door.json()["manifests"] == [{k: v for k, v in r.items() if k != "artifactStatus"} for r in referrers]

    signatures = [r for r in referrers if r["artifactType"] == SIGNATURE]
    assert listed(ecr, repo, subject, filter={"artifactTypes": [SIGNATURE]}) == {"referrers": signatures}
    both = [r for r in referrers if r["artifactType"] in (SIGNATURE, SBOM)]
    assert listed(ecr, repo, subject, filter={"artifactTypes": [SBOM, SIGNATURE]}) == {"referrers": both}
    assert listed(ecr, repo, subject, filter={"artifactTypes": []}) == {"referrers": referrers}
    assert listed(ecr, repo, subject, filter={"artifactTypes": ["application/none"]}) == {"referrers": []}

    assert listed(ecr, repo, subject, filter={"artifactStatus": "ACTIVE"}) == {"referrers": referrers}
    assert listed(ecr, repo, subject, filter={"artifactStatus": "ANY"}) == {"referrers": referrers}
    assert listed(ecr, repo, subject, filter={"artifactStatus": "ARCHIVED"}) == {"referrers": []}
    assert listed(ecr, repo, subject, filter={"artifactStatus": "ACTIVATING"}) == {"referrers": []}

    pages, token = [], None
    while True:
        page = listed(ecr, repo, subject, maxResults=1, **({"nextToken": token} if token else {}))
        pages.append(page["referrers"])
        token = page.get("nextToken")
        if token is None:
            break
    assert pages == [[r] for r in referrers]
    first = listed(ecr, repo, subject, maxResults=2, filter={"artifactTypes": [SIGNATURE]})
    assert first["referrers"] == signatures and "nextToken" not in first
    first = listed(ecr, repo, subject, maxResults=3)
    rest = listed(ecr, repo, subject, maxResults=3, nextToken=first["nextToken"])
    assert (first["referrers"], rest) == (referrers[:3], {"referrers": referrers[3:]})


def test_a_subject_without_referrers_and_ecrs_errors(ecr: Any, subject_with_referrers: Any) -> None:
    repo, subject, _ = subject_with_referrers
    unknown = "sha256:" + "0" * 64
    answer = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": unknown})
    assert answer["referrers"] == [] and "nextToken" not in answer

    with pytest.raises(ClientError) as bad_token:
        ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest}, nextToken="garbage")
    assert error_of(bad_token) == (
        "InvalidParameterException",
        "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'",
    )
    with pytest.raises(ClientError) as bad_digest:
        ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": "not-a-digest"})
    assert error_of(bad_digest)[0] == "InvalidParameterException"

    account = ecr.describe_registry()["registryId"]
    with pytest.raises(ClientError) as no_repo:
        ecr.list_image_referrers(repositoryName=f"{repo}-gone", subjectId={"imageDigest": subject.digest})
    assert error_of(no_repo) == (
        "RepositoryNotFoundException",
        f"The repository with name '{repo}-gone' does not exist in the registry with id '{account}'",
    )


def test_the_aws_cli_and_authorisation_as_batch_get_image(
    aws: AwsCli, subject_with_referrers: Any, dockyard_server: DockyardServer
) -> None:
    repo, subject, referrers = subject_with_referrers
    everything = aws(
        "ecr", "list-image-referrers", "--repository-name", repo, "--subject-id", f"imageDigest={subject.digest}"
    )
    assert everything == {"referrers": referrers}
    sboms = aws(
        "ecr", "list-image-referrers", "--repository-name", repo, "--subject-id", f"imageDigest={subject.digest}",
        "--filter", json.dumps({"artifactTypes": [SBOM], "artifactStatus": "ANY"}),
    )  # fmt: skip
    assert sboms == {"referrers": [r for r in referrers if r["artifactType"] == SBOM]}

    iam = Iam(aws, root_identity(dockyard_server))
    reader = iam.user(f"referrer-reader-{suffix()}", inline=policy(allow("ecr:BatchGetImage")))
    lister = iam.user(f"referrer-lister-{suffix()}", inline=policy(allow(["ecr:ListImages", "ecr:DescribeImages"])))
    arguments = (
        "ecr",
        "list-image-referrers",
        "--repository-name",
        repo,
        "--subject-id",
        f"imageDigest={subject.digest}",
    )
    assert aws(*arguments, env=reader.env()) == {"referrers": referrers}
    refused = aws(*arguments, env=lister.env(), check=False)
    arn = f"arn:aws:ecr:{dockyard_server.region}:{dockyard_server.account_id}:repository/{repo}"
    assert aws_error(refused) == access_denied(lister, "ecr:BatchGetImage", arn, operation="ListImageReferrers")

    # CloudTrail records the call as it records every ECR API call: read-only, with its parameters.
    trail = Boto3Clients(dockyard_server)("cloudtrail")
    deadline = time.monotonic() + 60
    while True:
        found = trail.lookup_events(
            LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "ListImageReferrers"}]
        )
        events = [json.loads(e["CloudTrailEvent"]) for e in found["Events"]]
        mine = [e for e in events if (e.get("requestParameters") or {}).get("repositoryName") == repo]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mine, "no ListImageReferrers event was recorded"
    assert mine[0]["eventSource"] == "ecr.amazonaws.com" and mine[0]["readOnly"] is True
    assert mine[0]["requestParameters"]["subjectId"] == {"imageDigest": subject.digest}
