"""Every repository policy example of the ECR user guide (seed: "Amazon ECR Repository Policy Examples"),
end to end as the users and accounts it names: skopeo pushes and pulls, the AWS CLI and boto3 call the
ECR API, and whatever the policy does not grant is refused as ECR refuses it. Also cross-account access
without a policy, and another account's registry addressed as ECR addresses it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.clients import (
    AwsCli,
    Boto3Clients,
    CommandResult,
    ContainersConfig,
    Skopeo,
    isolated_boto3_session,
    tls_args,
)
from tests.support.identities import (
    AUTH_ONLY,
    SECOND_ACCOUNT_ID,
    Iam,
    Identity,
    Registry,
    access_denied,
    allow,
    aws_error,
    denied,
    ensure_account,
    login_password,
    policy,
    root_identity,
    suffix,
)
from tests.support.images import BuiltImage, build_image
from tests.support.registry_http import RegistryHttp
from tests.support.server import DockyardServer

PULL = ["ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability"]
PUSH_PULL = [*PULL, "ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"]
CROSS_ACCOUNT_PUSH = [
    "ecr:GetDownloadUrlForLayer",
    "ecr:PutImage",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
]


@pytest.fixture(scope="module")
def second_root(dockyard_server: DockyardServer) -> Identity:
    return ensure_account(dockyard_server, SECOND_ACCOUNT_ID)


@dataclass
class Setup:
    server: DockyardServer
    aws: AwsCli
    skopeo: Skopeo
    owner: Iam
    other: Iam
    tmp: Path
    repository: str = ""
    image: BuiltImage | None = None

    @property
    def arn(self) -> str:
        return f"arn:aws:ecr:{self.server.region}:{self.server.account_id}:repository/{self.repository}"

    @property
    def registry(self) -> Registry:
        return Registry(self.skopeo, self.server.registry)

    def set_policy(self, document: dict[str, Any]) -> None:
        text = json.dumps(document).replace("aws_account_id", self.server.account_id)
        self.aws("ecr", "set-repository-policy", "--repository-name", self.repository, "--policy-text", text)

    def password(self, identity: Identity) -> str:
        return login_password(self.aws, identity)

    def image_for(self, tag: str) -> BuiltImage:
        return build_image(self.tmp / f"layout-{tag}", tag, [1536, 256], seed=f"{self.repository}-{tag}")

    def can_pull(self, identity: Identity, tag: str = "v1") -> bool:
        result = self.registry.pull(self.repository, tag, self.password(identity), self.tmp / f"pull-{suffix()}")
        assert result.returncode == 0 or denied(result), result.stderr
        return result.returncode == 0

    def can_push(self, identity: Identity, tag: str) -> bool:
        result = self.registry.push(self.image_for(tag), self.repository, self.password(identity))
        assert result.returncode == 0 or denied(result), result.stderr
        return result.returncode == 0

    def ecr_api(self, identity: Identity, *args: str) -> str:
        """'' when the AWS CLI call succeeds, else its error line."""
        result = self.aws("ecr", *args, env=identity.env(), check=False)
        return "" if result.returncode == 0 else aws_error(result)


@pytest.fixture
def setup(
    dockyard_server: DockyardServer,
    aws: AwsCli,
    boto3_client: Boto3Clients,
    skopeo: Skopeo,
    second_root: Identity,
    tmp_path: Path,
) -> Iterator[Setup]:
    """A fresh repository of the default account with image v1, pushed by its root user."""
    state = Setup(
        dockyard_server, aws, skopeo, Iam(aws, root_identity(dockyard_server)), Iam(aws, second_root), tmp_path
    )
    state.repository = f"policy-{suffix()}"
    ecr = boto3_client("ecr")
    ecr.create_repository(repositoryName=state.repository)
    state.image = state.image_for("v1")
    pushed = state.registry.push(state.image, state.repository, state.password(root_identity(dockyard_server)))
    assert pushed.returncode == 0, pushed.stderr
    yield state
    ecr.delete_repository(repositoryName=state.repository, force=True)


def _ecr_client(server: DockyardServer, identity: Identity) -> Any:
    return isolated_boto3_session(server).client(
        "ecr",
        endpoint_url=server.url,
        region_name=server.region,
        aws_access_key_id=identity.access_key_id,
        aws_secret_access_key=identity.secret_access_key,
    )


def _push_through_the_api(client: Any, registry_id: str, repository: str, image: BuiltImage, tag: str) -> None:
    """docker push's steps as ECR API calls: the layer upload actions, then PutImage."""
    for blob in image.blobs:
        upload = client.initiate_layer_upload(registryId=registry_id, repositoryName=repository)
        client.upload_layer_part(
            registryId=registry_id,
            repositoryName=repository,
            uploadId=upload["uploadId"],
            partFirstByte=0,
            partLastByte=blob.size - 1,
            layerPartBlob=blob.data,
        )
        client.complete_layer_upload(
            registryId=registry_id, repositoryName=repository, uploadId=upload["uploadId"], layerDigests=[blob.digest]
        )
    client.put_image(
        registryId=registry_id,
        repositoryName=repository,
        imageManifest=image.manifest.data.decode(),
        imageManifestMediaType=image.media_type,
        imageTag=tag,
    )


def test_allow_iam_users_within_your_account(setup: Setup) -> None:
    tag = suffix()
    first = setup.owner.user(f"push-pull-user-1-{tag}", inline=AUTH_ONLY)
    second = setup.owner.user(f"push-pull-user-2-{tag}", inline=AUTH_ONLY)
    outsider = setup.owner.user(f"outsider-{tag}", inline=AUTH_ONLY)
    setup.set_policy(
        policy(
            {
                "Sid": "AllowPushPull",
                "Effect": "Allow",
                "Principal": {"AWS": [first.arn, second.arn]},
                "Action": PUSH_PULL,
            },
            version="2008-10-17",
        )
    )
    for user in (first, second):
        assert setup.can_pull(user)
        assert setup.can_push(user, user.name[:14])
    assert not setup.can_pull(outsider)
    assert not setup.can_push(outsider, "outsider")
    assert setup.ecr_api(
        outsider, "batch-get-image", "--repository-name", setup.repository, "--image-ids", "imageTag=v1"
    ) == (access_denied(outsider, "ecr:BatchGetImage", setup.arn))
    # The policy grants push and pull, not listing.
    assert setup.ecr_api(first, "list-images", "--repository-name", setup.repository) == (
        access_denied(first, "ecr:ListImages", setup.arn)
    )


def test_allow_another_account_to_push(setup: Setup) -> None:
    pusher = setup.other.user(f"pusher-{suffix()}", inline=policy(allow("ecr:*")))
    setup.set_policy(
        policy(
            {
                "Sid": "AllowCrossAccountPush",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{SECOND_ACCOUNT_ID}:root"},
                "Action": CROSS_ACCOUNT_PUSH,
            },
            version="2008-10-17",
        )
    )
    # docker push's own steps, as ECR API calls: exactly the actions the example grants.
    client = _ecr_client(setup.server, pusher)
    pushed = setup.image_for("cross")
    _push_through_the_api(client, setup.server.account_id, setup.repository, pushed, "cross")
    listed = setup.aws("ecr", "list-images", "--repository-name", setup.repository)["imageIds"]
    assert {"imageDigest": pushed.digest, "imageTag": "cross"} in listed
    # The example does not grant BatchCheckLayerAvailability, which registry clients ask before
    # uploading a layer (a HEAD), nor pulling: both are refused, as ECR refuses them.
    assert not setup.can_push(pusher, "cross2")
    assert not setup.can_pull(pusher)
    refused = setup.ecr_api(
        pusher,
        "batch-get-image",
        "--registry-id",
        setup.server.account_id,
        "--repository-name",
        setup.repository,
        "--image-ids",
        "imageTag=v1",
    )
    assert refused == access_denied(pusher, "ecr:BatchGetImage", setup.arn, why="no_resource")
    # With BatchCheckLayerAvailability added (as the guide's later editions print it), registry
    # clients push too.
    setup.set_policy(
        policy(
            {
                "Sid": "AllowCrossAccountPush",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{SECOND_ACCOUNT_ID}:root"},
                "Action": [*CROSS_ACCOUNT_PUSH, "ecr:BatchCheckLayerAvailability"],
            }
        )
    )
    assert setup.can_push(pusher, "cross2")


def test_allow_all_accounts_to_pull(setup: Setup) -> None:
    foreign = setup.other.user(f"puller-{suffix()}", inline=policy(allow("ecr:*")))
    foreign_without_policy = setup.other.user(f"nopolicy-{suffix()}", inline=AUTH_ONLY)
    local = setup.owner.user(f"local-{suffix()}", inline=AUTH_ONLY)
    setup.set_policy(
        policy({"Sid": "AllowPull", "Effect": "Allow", "Principal": "*", "Action": PULL}, version="2008-10-17")
    )
    assert setup.can_pull(foreign)
    assert setup.can_pull(local)  # within the account the repository policy's grant suffices
    assert not setup.can_pull(foreign_without_policy)  # across accounts the caller's own policy must allow too
    assert not setup.can_push(foreign, "foreign")
    refused = setup.ecr_api(
        foreign_without_policy,
        "batch-get-image",
        "--registry-id",
        setup.server.account_id,
        "--repository-name",
        setup.repository,
        "--image-ids",
        "imageTag=v1",
    )
    assert refused == access_denied(foreign_without_policy, "ecr:BatchGetImage", setup.arn)


def test_pull_users_and_an_admin_user(setup: Setup) -> None:
    tag = suffix()
    pullers = [setup.owner.user(f"pull-user-{n}-{tag}", inline=AUTH_ONLY) for n in (1, 2)]
    admin_user = setup.owner.user(f"admin-user-{tag}", inline=AUTH_ONLY)
    setup.set_policy(
        policy(
            {"Sid": "AllowPull", "Effect": "Allow", "Principal": {"AWS": [p.arn for p in pullers]}, "Action": PULL},
            {"Sid": "AllowAll", "Effect": "Allow", "Principal": {"AWS": admin_user.arn}, "Action": ["ecr:*"]},
            version="2008-10-17",
        )
    )
    for puller in pullers:
        assert setup.can_pull(puller)
        assert not setup.can_push(puller, "puller")
    assert setup.can_pull(admin_user)
    assert setup.can_push(admin_user, "admin")
    assert (
        setup.ecr_api(
            admin_user, "batch-delete-image", "--repository-name", setup.repository, "--image-ids", "imageTag=admin"
        )
        == ""
    )
    assert setup.ecr_api(
        pullers[0], "batch-delete-image", "--repository-name", setup.repository, "--image-ids", "imageTag=v1"
    ) == (access_denied(pullers[0], "ecr:BatchDeleteImage", setup.arn))


def test_deny_all(setup: Setup) -> None:
    full = setup.owner.user(f"full-{suffix()}", managed=("AmazonEC2ContainerRegistryFullAccess",))
    root = root_identity(setup.server)
    setup.set_policy(
        policy({"Sid": "DenyPull", "Effect": "Deny", "Principal": "*", "Action": PULL}, version="2008-10-17")
    )
    assert not setup.can_pull(root)
    assert not setup.can_pull(full)
    args = ("batch-get-image", "--repository-name", setup.repository, "--image-ids", "imageTag=v1")
    assert setup.ecr_api(root, *args) == access_denied(root, "ecr:BatchGetImage", setup.arn, why="explicit_resource")
    assert setup.ecr_api(full, *args) == access_denied(full, "ecr:BatchGetImage", setup.arn, why="explicit_resource")
    # Only pulling is denied.
    assert setup.ecr_api(full, "list-images", "--repository-name", setup.repository) == ""
    setup.aws("ecr", "delete-repository-policy", "--repository-name", setup.repository)
    assert setup.can_pull(full)


def test_cross_account_pull_is_refused_without_a_repository_policy(setup: Setup) -> None:
    foreign = setup.other.user(f"stranger-{suffix()}", inline=policy(allow("ecr:*")))
    assert not setup.can_pull(foreign)
    refused = setup.ecr_api(
        foreign,
        "describe-images",
        "--registry-id",
        setup.server.account_id,
        "--repository-name",
        setup.repository,
    )
    assert refused == access_denied(foreign, "ecr:DescribeImages", setup.arn, why="no_resource")
    setup.set_policy(
        policy({"Effect": "Allow", "Principal": {"AWS": SECOND_ACCOUNT_ID}, "Action": [*PULL, "ecr:DescribeImages"]})
    )
    assert setup.can_pull(foreign)
    assert (
        setup.ecr_api(
            foreign, "describe-images", "--registry-id", setup.server.account_id, "--repository-name", setup.repository
        )
        == ""
    )


def _copy(skopeo: Skopeo, source: str, destination: str, *args: str, env: dict[str, str]) -> CommandResult:
    return skopeo("copy", "--quiet", *tls_args(source, destination), *args, source, destination, env=env, check=False)


def test_another_accounts_registry_by_its_ecr_host_name(
    setup: Setup, containers_config: ContainersConfig, second_root: Identity
) -> None:
    """`<account>.dkr.ecr.<region>.<host>` addresses that account's registry. No resolver knows such
    names here, so skopeo reaches the server through it as an HTTP proxy, which keeps the name in
    the request (the README's recipe for podman is a hosts entry instead)."""
    server = setup.server
    host = f"{SECOND_ACCOUNT_ID}.dkr.ecr.{server.region}.localhost:{server.port}"
    containers_config.add_insecure(host)
    proxy = {"HTTP_PROXY": server.url, "http_proxy": server.url, "NO_PROXY": "", "no_proxy": ""}
    # The second account's own repository, which only it can see.
    other_repository = f"theirs-{suffix()}"
    second_ecr = _ecr_client(server, second_root)
    second_ecr.create_repository(repositoryName=other_repository)
    try:
        image = setup.image_for("v2")
        password = setup.password(second_root)
        target = f"docker://{host}/{other_repository}:v2"
        pushed = _copy(setup.skopeo, image.ref, target, "--dest-creds", f"AWS:{password}", env=proxy)
        assert pushed.returncode == 0, pushed.stderr
        listed = setup.aws("ecr", "list-images", "--repository-name", other_repository, env=second_root.env())
        assert listed["imageIds"] == [{"imageDigest": image.digest, "imageTag": "v2"}]
        # The default account's root user is refused there: no policy lets it in.
        mine = setup.password(root_identity(server))
        refused = _copy(setup.skopeo, target, f"oci:{setup.tmp / 'x'}:v2", "--src-creds", f"AWS:{mine}", env=proxy)
        assert denied(refused), refused.stderr
        # And the plain host still means the default registry, where that repository does not exist.
        missing = setup.registry.inspect(other_repository, "v2", password)
        assert missing.returncode != 0
    finally:
        second_ecr.delete_repository(repositoryName=other_repository, force=True)


def _registry_denial(response: requests.Response) -> str:
    """The message of the registry API's 403 DENIED answer."""
    assert response.status_code == 403, (response.status_code, response.text)
    errors = response.json()["errors"]
    assert [error["code"] for error in errors] == ["DENIED"], errors
    return str(errors[0]["message"])


def test_the_registry_api_answers_403_denied_with_aws_message(setup: Setup) -> None:
    """What skopeo reports as "denied" is, on the wire, a 403 DENIED carrying AWS's own sentence:
    each registry request refused as the ECR action that governs it, in both of its forms."""
    outsider = setup.owner.user(f"wire-{suffix()}", inline=AUTH_ONLY)
    as_outsider = RegistryHttp(setup.server.url, setup.password(outsider))
    repository = setup.repository
    assert setup.image is not None
    requests_and_actions = [
        (("GET", f"/v2/{repository}/manifests/v1"), "ecr:BatchGetImage"),
        (("GET", f"/v2/{repository}/blobs/{setup.image.blobs[0].digest}"), "ecr:GetDownloadUrlForLayer"),
        (("POST", f"/v2/{repository}/blobs/uploads/"), "ecr:InitiateLayerUpload"),
        (("GET", f"/v2/{repository}/tags/list"), "ecr:ListImages"),
        (("DELETE", f"/v2/{repository}/manifests/{setup.image.digest}"), "ecr:BatchDeleteImage"),
    ]
    for (method, path), action in requests_and_actions:
        message = _registry_denial(as_outsider.request(method, path))
        assert message == (
            f"User: {outsider.arn} is not authorized to perform: {action} on resource: {setup.arn} "
            f"because no identity-based policy allows the {action} action"
        )
    # A HEAD has no body, only the status.
    assert as_outsider.request("HEAD", f"/v2/{repository}/manifests/v1").status_code == 403
    # A deny in the repository policy binds even the account's root user.
    setup.set_policy(
        policy({"Sid": "DenyPull", "Effect": "Deny", "Principal": "*", "Action": PULL}, version="2008-10-17")
    )
    root = root_identity(setup.server)
    as_root = RegistryHttp(setup.server.url, setup.password(root))
    message = _registry_denial(as_root.request("GET", f"/v2/{repository}/manifests/v1"))
    assert message == (
        f"User: {root.arn} is not authorized to perform: ecr:BatchGetImage on resource: {setup.arn} "
        "with an explicit deny in a resource-based policy"
    )
    assert as_root.request("GET", f"/v2/{repository}/tags/list").status_code == 200


def test_tag_conditions_decide_on_every_path(setup: Setup) -> None:
    """ecr:ResourceTag/… on the repository's own tags (registry pulls and API calls alike), and
    aws:RequestTag/… with aws:TagKeys on the tags a request sets."""
    web_only = {"StringEquals": {"ecr:ResourceTag/team": "web"}}
    user = setup.owner.user(
        f"tagged-{suffix()}",
        inline=policy(
            allow("ecr:GetAuthorizationToken"),
            {**allow([*PULL, "ecr:ListImages"]), "Condition": web_only},
            {
                **allow(["ecr:CreateRepository", "ecr:TagResource"]),
                "Condition": {
                    "StringEquals": {"aws:RequestTag/team": "web"},
                    "ForAllValues:StringEquals": {"aws:TagKeys": ["team"]},
                },
            },
            allow("ecr:DeleteRepository"),
        ),
    )
    assert not setup.can_pull(user)
    listing = ("list-images", "--repository-name", setup.repository)
    assert setup.ecr_api(user, *listing) == access_denied(user, "ecr:ListImages", setup.arn)
    setup.aws("ecr", "tag-resource", "--resource-arn", setup.arn, "--tags", "Key=team,Value=web")
    assert setup.can_pull(user)
    assert setup.ecr_api(user, *listing) == ""
    setup.aws("ecr", "tag-resource", "--resource-arn", setup.arn, "--tags", "Key=team,Value=db")
    assert not setup.can_pull(user)

    name = f"tagged-{suffix()}"
    arn = setup.arn.rsplit("/", 1)[0] + f"/{name}"
    create = ("create-repository", "--repository-name", name)
    assert setup.ecr_api(user, *create) == access_denied(user, "ecr:CreateRepository", arn)
    assert setup.ecr_api(user, *create, "--tags", "Key=team,Value=db") == (
        access_denied(user, "ecr:CreateRepository", arn)
    )
    assert setup.ecr_api(user, *create, "--tags", "Key=team,Value=web", "Key=owner,Value=me") == (
        access_denied(user, "ecr:CreateRepository", arn)
    )
    assert setup.ecr_api(user, *create, "--tags", "Key=team,Value=web") == ""
    assert setup.ecr_api(user, "delete-repository", "--repository-name", name) == ""
