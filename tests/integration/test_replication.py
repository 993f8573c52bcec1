"""Replication as ECR has it, driven by real clients: PutReplicationConfiguration and
DescribeRegistry (boto3 and the AWS CLI), images pushed over the registry API copied to another
region and to another account of the same deployment (metadata only: blobs are shared), the
destination registry's policy deciding across accounts, the REPLICATION creation template
applied, referrers carried, tags following, DescribeImageReplicationStatus through every state;
podman pushing with the AWS CLI's password and pulling the replica from the other region;
managed signatures stored after their subject was copied replicated too, verifying there; a
source killed with SIGKILL mid-way losing and duplicating nothing; and two Dockyard servers as
two sites, the second one down for a while, skopeo pulling the replica from it."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.integration.test_managed_signing import (
    make_profile,
    root_certificate,
    signatures_of,
    verify_notary_signature,
    wait_for_signing,
)
from tests.support.clients import AwsCli, Boto3Clients, ContainersConfig, Podman, Skopeo, isolated_boto3_session
from tests.support.identities import SECOND_ACCOUNT_ID, ensure_account, suffix
from tests.support.images import build_image
from tests.support.registry_http import OCI_MANIFEST, RegistryHttp, digest_of
from tests.support.server import (
    DockyardServer,
    ServerFactory,
    access_key_id,
    free_port,
    secret_access_key,
)

OTHER_REGION = "us-west-2"
REPLICATION_TIMEOUT = 120.0
SBOM_TYPE = "application/spdx+json"


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    made = ServerFactory(tmp_path_factory.mktemp("replication"))
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def server(factory: ServerFactory) -> DockyardServer:
    return factory(args=["--workers", "2"])


@pytest.fixture(scope="module")
def clients(server: DockyardServer) -> Boto3Clients:
    return Boto3Clients(server)


@pytest.fixture(scope="module")
def registry(server: DockyardServer) -> RegistryHttp:
    return RegistryHttp.for_server(server)


def ecr_as(server: DockyardServer, key: tuple[str, str], region: str) -> Any:
    return isolated_boto3_session(server).client(
        "ecr",
        endpoint_url=server.url,
        region_name=region,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
    )


def wait_for_status(ecr: Any, repository: str, digest: str, wanted: str = "COMPLETE") -> list[dict[str, Any]]:
    """The image's replication statuses once every one is `wanted` (bounded)."""
    deadline = time.monotonic() + REPLICATION_TIMEOUT
    while True:
        found = ecr.describe_image_replication_status(repositoryName=repository, imageId={"imageDigest": digest})
        statuses = found["replicationStatuses"]
        if statuses and all(s["status"] == wanted for s in statuses):
            return statuses
        assert time.monotonic() < deadline, f"replication of {repository}@{digest} never {wanted}: {statuses}"
        time.sleep(0.2)


def configure(ecr: Any, destinations: list[tuple[str, str]], prefix: str) -> None:
    ecr.put_replication_configuration(
        replicationConfiguration={
            "rules": [
                {
                    "destinations": [{"region": r, "registryId": a} for r, a in destinations],
                    "repositoryFilters": [{"filter": prefix, "filterType": "PREFIX_MATCH"}],
                }
            ]
        }
    )


def push_sbom(registry: RegistryHttp, repository: str, subject: str, subject_size: int) -> str:
    """An SBOM artifact whose subject is `subject`, pushed by digest; its digest."""
    empty = registry.push_blob(repository, b"{}")
    body = registry.push_blob(repository, b'{"spdxVersion": "SPDX-2.3"}')
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SBOM_TYPE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": SBOM_TYPE, "digest": body, "size": 27}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
        }
    ).encode()
    digest = digest_of(manifest)
    response = registry.request(
        "PUT", f"/v2/{repository}/manifests/{digest}", data=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201, response.text
    return digest


def region_request(server: DockyardServer, ecr: Any, method: str, path: str) -> requests.Response:
    """A registry API request to the registry of `ecr`'s account and region, named by its ECR host."""
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).decode().partition(":")[2]
    region = ecr.meta.region_name
    account = ecr.describe_registry()["registryId"]
    host = f"{account}.dkr.ecr.{region}.amazonaws.com"
    return requests.request(method, server.url + path, auth=("AWS", password), headers={"Host": host}, timeout=30)


def images_in(ecr: Any, repository: str) -> dict[str, list[str]]:
    found = ecr.describe_images(repositoryName=repository)["imageDetails"]
    return {d["imageDigest"]: sorted(d.get("imageTags", [])) for d in found}


def test_configuration_is_validated_and_described(clients: Boto3Clients, server: DockyardServer) -> None:
    ecr = clients("ecr")
    assert ecr.describe_registry()["replicationConfiguration"] == {"rules": []}

    def refused(rules: list[dict[str, Any]]) -> str:
        with pytest.raises(ClientError) as caught:
            ecr.put_replication_configuration(replicationConfiguration={"rules": rules})
        assert caught.value.response["Error"]["Code"] == "InvalidParameterException"
        return caught.value.response["Error"]["Message"]

    own = {"region": server.region, "registryId": server.account_id}
    assert "same as the source registry" in refused([{"destinations": [own]}])
    assert "at most 10 rules" in refused(
        [{"destinations": [{"region": OTHER_REGION, "registryId": server.account_id}]}] * 11
    )
    many = [{"region": f"eu-test-{n}", "registryId": server.account_id} for n in range(26)]
    assert "at most 25 unique destinations" in refused([{"destinations": many}])
    assert ecr.describe_registry()["replicationConfiguration"] == {"rules": []}

    rules = [
        {
            "destinations": [{"region": OTHER_REGION, "registryId": server.account_id}],
            "repositoryFilters": [{"filter": "described", "filterType": "PREFIX_MATCH"}],
        }
    ]
    answer = ecr.put_replication_configuration(replicationConfiguration={"rules": rules})
    assert answer["replicationConfiguration"] == {"rules": rules}
    described = ecr.describe_registry()
    assert described["registryId"] == server.account_id
    assert described["replicationConfiguration"] == {"rules": rules}


def test_cross_region_copies_image_referrers_and_tags_with_the_template(
    clients: Boto3Clients, server: DockyardServer, registry: RegistryHttp
) -> None:
    ecr = clients("ecr")
    key = (server.access_key_id, server.secret_access_key)
    west = ecr_as(server, key, OTHER_REGION)
    prefix = f"region-{suffix()}"
    repository = f"{prefix}/app"
    west.create_repository_creation_template(
        prefix=prefix,
        appliedFor=["REPLICATION"],
        description="replicas",
        resourceTags=[{"Key": "replica", "Value": "yes"}],
        lifecyclePolicy=json.dumps(
            {
                "rules": [
                    {
                        "rulePriority": 1,
                        "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 50},
                        "action": {"type": "expire"},
                    }
                ]
            }
        ),
    )
    configure(ecr, [(OTHER_REGION, server.account_id)], prefix)
    ecr.create_repository(repositoryName=repository)
    first, manifest = registry.push_image(repository, "v1", [b"layer one " + prefix.encode(), b"shared layer"])
    sbom = push_sbom(registry, repository, first, len(manifest))

    statuses = wait_for_status(ecr, repository, first)
    assert statuses == [{"region": OTHER_REGION, "registryId": server.account_id, "status": "COMPLETE"}]
    wait_for_status(ecr, repository, sbom)
    replica = west.describe_repositories(repositoryNames=[repository])["repositories"][0]
    assert replica["repositoryArn"] == f"arn:aws:ecr:{OTHER_REGION}:{server.account_id}:repository/{repository}"
    tags = west.list_tags_for_resource(resourceArn=replica["repositoryArn"])["tags"]
    assert tags == [{"Key": "replica", "Value": "yes"}]
    assert west.get_lifecycle_policy(repositoryName=repository)["lifecyclePolicyText"]
    assert images_in(west, repository) == {first: ["v1"], sbom: []}
    pulled = west.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": "v1"}])["images"][0]
    assert pulled["imageManifest"].encode() == manifest
    # The SBOM is the replica's referrer too, through the other region's registry API.
    referrers = region_request(server, west, "GET", f"/v2/{repository}/referrers/{first}").json()["manifests"]
    assert [(r["digest"], r["artifactType"]) for r in referrers] == [(sbom, SBOM_TYPE)]
    # Layers are readable in the other region without a byte copied: the blob store is shared.
    layer = json.loads(manifest)["layers"][0]["digest"]
    url = west.get_download_url_for_layer(repositoryName=repository, layerDigest=layer)["downloadUrl"]
    assert requests.get(url, timeout=30).content == b"layer one " + prefix.encode()

    # A tag moved at the source moves at the destination; the image it left stays (deletes and
    # tag removals are not replicated by default).
    second, _ = registry.push_image(repository, "v1", [b"layer two " + prefix.encode()])
    wait_for_status(ecr, repository, second)
    assert images_in(west, repository) == {first: [], sbom: [], second: ["v1"]}
    # Re-tagging an image already there is a push too: the new tag follows.
    retag = registry.request(
        "PUT", f"/v2/{repository}/manifests/stable", data=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert retag.status_code == 201, retag.text
    deadline = time.monotonic() + REPLICATION_TIMEOUT
    while images_in(west, repository)[first] != ["stable"]:
        assert time.monotonic() < deadline, images_in(west, repository)
        time.sleep(0.2)
    # A delete at the source is not replicated.
    ecr.batch_delete_image(repositoryName=repository, imageIds=[{"imageDigest": second}])
    assert second in images_in(west, repository)

    # A repository no rule covers is not replicated: its images have no status.
    other = f"unreplicated-{suffix()}"
    ecr.create_repository(repositoryName=other)
    alone, _ = registry.push_image(other, "v1", [b"alone"])
    found = ecr.describe_image_replication_status(repositoryName=other, imageId={"imageDigest": alone})
    assert found["replicationStatuses"] == []


def destination_events(
    server: DockyardServer, key: tuple[str, str], name: str, repository: str
) -> list[dict[str, Any]]:
    trail = isolated_boto3_session(server).client(
        "cloudtrail",
        endpoint_url=server.url,
        region_name=server.region,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
    )
    found = trail.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}])
    events = [json.loads(e["CloudTrailEvent"]) for e in found["Events"]]
    return [e for e in events if e["requestParameters"]["repositoryName"] == repository]


def test_cross_account_needs_the_destination_registry_policy(
    clients: Boto3Clients, server: DockyardServer, registry: RegistryHttp
) -> None:
    ecr = clients("ecr")
    other = ensure_account(server, SECOND_ACCOUNT_ID)
    other_key = (other.access_key_id, other.secret_access_key)
    theirs = ecr_as(server, other_key, server.region)
    prefix = f"account-{suffix()}"
    repository = f"{prefix}/app"
    configure(ecr, [(server.region, SECOND_ACCOUNT_ID)], prefix)
    ecr.create_repository(repositoryName=repository)

    refused, _ = registry.push_image(repository, "v1", [b"refused " + prefix.encode()])
    statuses = wait_for_status(ecr, repository, refused, "FAILED")
    assert statuses == [
        {"region": server.region, "registryId": SECOND_ACCOUNT_ID, "status": "FAILED", "failureCode": "AccessDenied"}
    ]
    with pytest.raises(ClientError) as caught:
        theirs.describe_repositories(repositoryNames=[repository])
    assert caught.value.response["Error"]["Code"] == "RepositoryNotFoundException"
    denied = destination_events(server, other_key, "ReplicateImage", repository)
    assert [(e["errorCode"], e["recipientAccountId"], e["userIdentity"]["accountId"]) for e in denied] == [
        ("AccessDenied", SECOND_ACCOUNT_ID, server.account_id)
    ]

    theirs.put_registry_policy(
        policyText=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "ReplicationFromSource",
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{server.account_id}:root"},
                        "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
                        "Resource": f"arn:aws:ecr:{server.region}:{SECOND_ACCOUNT_ID}:repository/*",
                    }
                ],
            }
        )
    )
    allowed, manifest = registry.push_image(repository, "v2", [b"allowed " + prefix.encode()])
    wait_for_status(ecr, repository, allowed)
    assert images_in(theirs, repository) == {allowed: ["v2"]}
    pulled = theirs.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": "v2"}])["images"][0]
    assert pulled["imageManifest"].encode() == manifest
    created = destination_events(server, other_key, "CreateRepository", repository)
    assert len(created) == 1 and "errorCode" not in created[0]
    replicated = [
        e for e in destination_events(server, other_key, "ReplicateImage", repository) if "errorCode" not in e
    ]
    assert [e["requestParameters"]["imageDigest"] for e in replicated] == [allowed]
    # The source account's own trail has its own CreateRepository call, none of replication's.
    own = destination_events(server, (server.access_key_id, server.secret_access_key), "CreateRepository", repository)
    assert [e["userIdentity"]["type"] for e in own] == ["Root"]


def test_aws_cli_parity(server: DockyardServer, registry: RegistryHttp) -> None:
    aws = AwsCli(server)
    prefix = f"cli-{suffix()}"
    configuration = {
        "rules": [
            {
                "destinations": [{"region": OTHER_REGION, "registryId": server.account_id}],
                "repositoryFilters": [{"filter": prefix, "filterType": "PREFIX_MATCH"}],
            }
        ]
    }
    put = aws("ecr", "put-replication-configuration", "--replication-configuration", json.dumps(configuration))
    assert put == {"replicationConfiguration": configuration}
    assert aws("ecr", "describe-registry") == {
        "registryId": server.account_id,
        "replicationConfiguration": configuration,
    }
    repository = f"{prefix}/app"
    aws("ecr", "create-repository", "--repository-name", repository)
    digest, _ = registry.push_image(repository, "v1", [b"cli " + prefix.encode()])
    deadline = time.monotonic() + REPLICATION_TIMEOUT
    while True:
        status = aws(
            "ecr", "describe-image-replication-status", "--repository-name", repository, "--image-id", "imageTag=v1"
        )
        if status["replicationStatuses"][0]["status"] == "COMPLETE":
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert status == {
        "repositoryName": repository,
        "imageId": {"imageTag": "v1", "imageDigest": digest},
        "replicationStatuses": [{"region": OTHER_REGION, "registryId": server.account_id, "status": "COMPLETE"}],
    }
    refused = aws(
        "ecr",
        "put-replication-configuration",
        "--replication-configuration",
        json.dumps({"rules": [{"destinations": [{"region": server.region, "registryId": server.account_id}]}]}),
        check=False,
    )
    assert refused.returncode != 0
    assert "InvalidParameterException" in refused.stderr


def test_podman_push_is_replicated_and_podman_pulls_the_replica(
    server: DockyardServer, podman: Podman, containers_config: ContainersConfig, tmp_path: Path
) -> None:
    """The user guide's flow with unmodified clients: the AWS CLI configures replication and logs
    podman in; podman pushes to one region and pulls the copy from the other, by that region's
    registry host name (reached through the server as an HTTP proxy, which keeps the name)."""
    aws = AwsCli(server)
    prefix = f"podman-{suffix()}"
    repository = f"{prefix}/app"
    configuration = {
        "rules": [
            {
                "destinations": [{"region": OTHER_REGION, "registryId": server.account_id}],
                "repositoryFilters": [{"filter": prefix, "filterType": "PREFIX_MATCH"}],
            }
        ]
    }
    aws("ecr", "put-replication-configuration", "--replication-configuration", json.dumps(configuration))
    aws("ecr", "create-repository", "--repository-name", repository)
    containers_config.trust_server(server)
    podman.login(server.registry, aws("ecr", "get-login-password"))
    image = build_image(tmp_path / "layout", "v1", [64 * 1024, {"etc/motd": b"replicated\n"}], seed=prefix)
    image_id = podman.load(image, f"localhost/{prefix}:v1")
    target = f"{server.registry}/{repository}:v1"
    podman("tag", f"localhost/{prefix}:v1", target)
    pushed = podman.push(target)
    assert isinstance(pushed, str) and pushed.startswith("sha256:")

    deadline = time.monotonic() + REPLICATION_TIMEOUT
    while True:
        status = aws(
            "ecr", "describe-image-replication-status", "--repository-name", repository, "--image-id", "imageTag=v1"
        )
        if status["replicationStatuses"][0]["status"] == "COMPLETE":
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert status["imageId"] == {"imageTag": "v1", "imageDigest": pushed}
    listed = aws("ecr", "list-images", "--repository-name", repository, "--region", OTHER_REGION)
    assert listed["imageIds"] == [{"imageDigest": pushed, "imageTag": "v1"}]

    west = f"{server.account_id}.dkr.ecr.{OTHER_REGION}.localhost:{server.port}"
    containers_config.add_insecure(west)
    proxy = {"HTTP_PROXY": server.url, "http_proxy": server.url, "NO_PROXY": "", "no_proxy": ""}
    password = aws("ecr", "get-login-password", "--region", OTHER_REGION)
    podman("login", "--username", "AWS", "--password-stdin", west, input=password, env=proxy)
    # Nothing of the image left locally: the pull fetches every layer from the replica.
    podman("rmi", "--force", image_id)
    podman("pull", "--quiet", f"{west}/{repository}:v1", env=proxy)
    pulled = podman.inspect(f"{west}/{repository}:v1")
    assert pulled["Digest"] == pushed
    assert pulled["Id"] == image_id


def test_managed_signatures_are_replicated_and_verify_there(
    clients: Boto3Clients, server: DockyardServer, registry: RegistryHttp
) -> None:
    """The signing worker stores a signature after its image was pushed (and perhaps copied
    already): the signature is replicated in its own right, and verifies in the other region."""
    signer, ecr = clients("signer"), clients("ecr")
    prefix = f"signed-{suffix()}"
    repository = f"{prefix}/app"
    profile = make_profile(signer, prefix.replace("-", "_"))["arn"]
    ecr.put_signing_configuration(
        signingConfiguration={
            "rules": [
                {
                    "signingProfileArn": profile,
                    "repositoryFilters": [{"filter": f"{prefix}/*", "filterType": "WILDCARD_MATCH"}],
                }
            ]
        }
    )
    try:
        configure(ecr, [(OTHER_REGION, server.account_id)], prefix)
        ecr.create_repository(repositoryName=repository)
        digest, manifest = registry.push_image(repository, "v1", [b"signed layer " + prefix.encode()])
        [signed] = wait_for_signing(ecr, repository, digest)
        assert signed["status"] == "COMPLETE"
        [descriptor] = signatures_of(registry, repository, digest)
        signature = descriptor["digest"]
        wait_for_status(ecr, repository, digest)
        # The signature's own copy: queued when the worker stored it, whatever the subject's did.
        assert wait_for_status(ecr, repository, signature) == [
            {"region": OTHER_REGION, "registryId": server.account_id, "status": "COMPLETE"}
        ]
    finally:
        ecr.delete_signing_configuration()

    west = ecr_as(server, (server.access_key_id, server.secret_access_key), OTHER_REGION)
    assert images_in(west, repository) == {digest: ["v1"], signature: []}
    referrers = region_request(server, west, "GET", f"/v2/{repository}/referrers/{digest}").json()["manifests"]
    assert [r["digest"] for r in referrers] == [signature]
    copied = region_request(server, west, "GET", f"/v2/{repository}/manifests/{signature}")
    assert copied.status_code == 200, copied.text
    [layer] = copied.json()["layers"]
    envelope = region_request(server, west, "GET", f"/v2/{repository}/blobs/{layer['digest']}")
    assert envelope.status_code == 200 and digest_of(envelope.content) == layer["digest"]
    verify_notary_signature(envelope.content, root_certificate(server), digest, len(manifest))


def replication_rows(server: DockyardServer) -> list[tuple[str, int]]:
    database = sqlite3.connect(server.data_dir / "metadata.db")
    try:
        return database.execute(
            "SELECT status, COUNT(*) FROM image_replication_statuses GROUP BY status ORDER BY status"
        ).fetchall()
    finally:
        database.close()


def test_sigkill_mid_replication_loses_and_duplicates_nothing(factory: ServerFactory) -> None:
    server = factory(args=["--workers", "2"])
    ecr = Boto3Clients(server)("ecr")
    west = ecr_as(server, (server.access_key_id, server.secret_access_key), OTHER_REGION)
    configure(ecr, [(OTHER_REGION, server.account_id)], "crash")
    ecr.create_repository(repositoryName="crash/app")
    registry = RegistryHttp.for_server(server)
    pushed: dict[str, str] = {}
    deadline = time.monotonic() + 60
    # Push until replication lags behind, then kill the source with jobs still queued or claimed.
    while True:
        tag = f"t{len(pushed)}"
        digest, _ = registry.push_image("crash/app", tag, [f"crash layer {tag}".encode()])
        pushed[tag] = digest
        waiting = dict(replication_rows(server)).get("IN_PROGRESS", 0)
        if len(pushed) >= 20 and waiting >= 3:
            break
        assert time.monotonic() < deadline, f"replication never lagged: {replication_rows(server)}"
    server.kill()
    assert dict(replication_rows(server)).get("IN_PROGRESS", 0) > 0

    server.start()
    deadline = time.monotonic() + REPLICATION_TIMEOUT
    while dict(replication_rows(server)).get("IN_PROGRESS", 0):
        assert time.monotonic() < deadline, replication_rows(server)
        time.sleep(0.3)
    assert replication_rows(server) == [("COMPLETE", len(pushed))]
    west = ecr_as(server, (server.access_key_id, server.secret_access_key), OTHER_REGION)
    replicas = images_in(west, "crash/app")
    assert replicas == {digest: [tag] for tag, digest in pushed.items()}
    database = sqlite3.connect(server.data_dir / "metadata.db")
    try:
        counted, held = database.execute(
            "SELECT r.image_count, (SELECT COUNT(*) FROM images i WHERE i.repository_id = r.id) "
            "FROM repositories r WHERE r.region = ? AND r.name = 'crash/app'",
            (OTHER_REGION,),
        ).fetchone()
    finally:
        database.close()
    assert counted == held == len(pushed)


def blob_uploads(server: DockyardServer) -> int:
    """Blob uploads the server completed, from its request logs (every start's)."""
    total = 0
    for log in server.work_dir.glob("stderr.*.log"):
        total += sum('"operation":"CompleteLayerUpload"' in line for line in log.read_text().splitlines())
    return total


def test_two_sites_replicate_over_the_network_and_catch_up(factory: ServerFactory, skopeo: Skopeo) -> None:
    site_key = (access_key_id(), secret_access_key())
    site = factory(args=["--workers", "2"], region=OTHER_REGION, port=free_port(), start=False, access_key=site_key)
    source = factory(
        args=[
            "--workers",
            "2",
            "--replication-site",
            f"{OTHER_REGION}={site.url}",
            "--replication-site-credentials",
            f"{OTHER_REGION}={site_key[0]}:{site_key[1]}",
        ]
    )
    ecr = Boto3Clients(source)("ecr")
    configure(ecr, [(OTHER_REGION, source.account_id)], "dr")
    ecr.create_repository(repositoryName="dr/app")
    registry = RegistryHttp.for_server(source)
    shared = b"a layer both images share " * 4096
    first, _ = registry.push_image("dr/app", "v1", [shared, b"first's own layer"])

    # The site is down: the job stays IN_PROGRESS, reporting why, and is retried with backoff.
    deadline = time.monotonic() + REPLICATION_TIMEOUT
    while True:
        found = ecr.describe_image_replication_status(repositoryName="dr/app", imageId={"imageDigest": first})
        statuses = found["replicationStatuses"]
        if statuses[0].get("failureCode"):
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(0.2)
    assert statuses == [
        {
            "region": OTHER_REGION,
            "registryId": source.account_id,
            "status": "IN_PROGRESS",
            "failureCode": "SiteUnavailable",
        }
    ]

    # Up again: it catches up.
    site.start()
    wait_for_status(ecr, "dr/app", first)
    password = registry_password_of(site)
    skopeo.login(site.hostport, password)
    inspected = skopeo.inspect(f"docker://{site.hostport}/dr/app:v1").json()
    assert inspected["Digest"] == first
    assert len(inspected["Layers"]) == 2

    # A second image sends only what the site lacks: its own layer and config, not the shared one.
    before = blob_uploads(site)
    second, _ = registry.push_image("dr/app", "v2", [shared, b"second's own layer"])
    wait_for_status(ecr, "dr/app", second)
    assert blob_uploads(site) - before == 2
    copied = site.work_dir / "copied"
    skopeo.copy(f"docker://{site.hostport}/dr/app:v2", f"dir:{copied}", "--src-tls-verify=false")
    manifest = json.loads((copied / "manifest.json").read_text())
    assert digest_of((copied / "manifest.json").read_bytes()) == second
    assert [layer["digest"] for layer in manifest["layers"]][0] == digest_of(shared)


def registry_password_of(server: DockyardServer) -> str:
    token = Boto3Clients(server)("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).decode().partition(":")[2]
