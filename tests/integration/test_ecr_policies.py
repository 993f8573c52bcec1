"""Repository and registry policies through boto3 and the AWS CLI: stored, validated, handed back
as ECR prints them, and a policy that would lock its author out refused unless forced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.ecr_support import error_of, repository
from tests.support.clients import AwsCli, Boto3Clients
from tests.support.server import DockyardServer

# The seed's "allow all AWS accounts to pull images" example.
PULL_FOR_ALL = {
    "Version": "2008-10-17",
    "Statement": [
        {
            "Sid": "AllowPull",
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability"],
        }
    ],
}
# How ECR hands that document back (Jackson's pretty printer).
PULL_FOR_ALL_AS_PRINTED = """{
  "Version" : "2008-10-17",
  "Statement" : [ {
    "Sid" : "AllowPull",
    "Effect" : "Allow",
    "Principal" : "*",
    "Action" : [ "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability" ]
  } ]
}"""
LOCKOUT = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "NoMore", "Effect": "Deny", "Principal": "*", "Action": "ecr:SetRepositoryPolicy"}],
}


@pytest.fixture
def ecr(boto3_client: Boto3Clients) -> Any:
    return boto3_client("ecr")


@pytest.fixture
def repo(ecr: Any) -> Iterator[str]:
    with repository(ecr, "policies") as name:
        yield name


def test_repository_policy_life_cycle(ecr: Any, repo: str, dockyard_server: DockyardServer) -> None:
    account = dockyard_server.account_id
    not_found = (
        "RepositoryPolicyNotFoundException",
        f"Repository policy does not exist for the repository with name '{repo}' in the registry with id '{account}'",
    )
    with pytest.raises(ClientError) as none_yet:
        ecr.get_repository_policy(repositoryName=repo)
    assert error_of(none_yet) == not_found

    text = json.dumps(PULL_FOR_ALL)
    set_answer = ecr.set_repository_policy(repositoryName=repo, policyText=text)
    assert (set_answer["registryId"], set_answer["repositoryName"]) == (account, repo)
    got = ecr.get_repository_policy(repositoryName=repo)
    assert got["policyText"] == PULL_FOR_ALL_AS_PRINTED
    assert json.loads(got["policyText"]) == PULL_FOR_ALL

    deleted = ecr.delete_repository_policy(repositoryName=repo)
    assert deleted["policyText"] == PULL_FOR_ALL_AS_PRINTED
    with pytest.raises(ClientError) as gone:
        ecr.delete_repository_policy(repositoryName=repo)
    assert error_of(gone) == not_found


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*"}]}),  # no Principal
        json.dumps(
            {  # repository policies have no Resource
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:ListImages", "Resource": "*"}],
            }
        ),
        json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "ecr:*"}]}),
    ],
)
def test_invalid_repository_policies_are_refused(ecr: Any, repo: str, document: str) -> None:
    with pytest.raises(ClientError) as refused:
        ecr.set_repository_policy(repositoryName=repo, policyText=document)
    assert error_of(refused) == (
        "InvalidParameterException",
        "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'",
    )


def test_a_policy_that_locks_the_caller_out_needs_force(ecr: Any, repo: str) -> None:
    with pytest.raises(ClientError) as refused:
        ecr.set_repository_policy(repositoryName=repo, policyText=json.dumps(LOCKOUT))
    code, message = error_of(refused)
    assert code == "InvalidParameterException" and "SetRepositoryPolicy" in message
    with pytest.raises(ClientError):
        ecr.get_repository_policy(repositoryName=repo)  # nothing was stored

    forced = ecr.set_repository_policy(repositoryName=repo, policyText=json.dumps(LOCKOUT), force=True)
    assert json.loads(forced["policyText"]) == LOCKOUT
    # The lock-out is real: even the account's root user may no longer set a policy.
    with pytest.raises(ClientError) as locked:
        ecr.set_repository_policy(repositoryName=repo, policyText=json.dumps(PULL_FOR_ALL))
    assert error_of(locked)[0] == "AccessDeniedException"
    ecr.delete_repository_policy(repositoryName=repo)


def test_policies_of_a_missing_repository(ecr: Any, dockyard_server: DockyardServer) -> None:
    for call in (ecr.get_repository_policy, ecr.delete_repository_policy):
        with pytest.raises(ClientError) as missing:
            call(repositoryName="policies-nowhere")
        assert error_of(missing)[0] == "RepositoryNotFoundException"


def registry_policy(account: str, region: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReplicateIn",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
                "Resource": f"arn:aws:ecr:{region}:{account}:repository/*",
            }
        ],
    }


def test_registry_policy_life_cycle(ecr: Any, dockyard_server: DockyardServer) -> None:
    account = dockyard_server.account_id
    document = registry_policy(account, dockyard_server.region)
    not_found = (
        "RegistryPolicyNotFoundException",
        f"Registry policy does not exist in the registry with id '{account}'",
    )
    if _has_registry_policy(ecr):
        ecr.delete_registry_policy()
    with pytest.raises(ClientError) as none_yet:
        ecr.get_registry_policy()
    assert error_of(none_yet) == not_found

    put = ecr.put_registry_policy(policyText=json.dumps(document))
    assert put["registryId"] == account and json.loads(put["policyText"]) == document
    assert json.loads(ecr.get_registry_policy()["policyText"]) == document
    # Under the V1 registry policy scope, registry policies grant replication and pull-through-cache
    # actions only (V2, the default, takes any action: tests/integration/test_ecr_account.py).
    pull = {**document, "Statement": [{**document["Statement"][0], "Action": "ecr:BatchGetImage"}]}
    ecr.put_account_setting(name="REGISTRY_POLICY_SCOPE", value="V1")
    try:
        with pytest.raises(ClientError) as refused:
            ecr.put_registry_policy(policyText=json.dumps(pull))
    finally:
        ecr.put_account_setting(name="REGISTRY_POLICY_SCOPE", value="V2")
    assert error_of(refused) == (
        "InvalidParameterException",
        "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid registry policy provided'",
    )
    assert json.loads(ecr.delete_registry_policy()["policyText"]) == document
    with pytest.raises(ClientError) as gone:
        ecr.delete_registry_policy()
    assert error_of(gone) == not_found


def _has_registry_policy(ecr: Any) -> bool:
    try:
        ecr.get_registry_policy()
    except ClientError:
        return False
    return True


def test_policy_commands_with_the_cli(
    aws: AwsCli, ecr: Any, repo: str, tmp_path: Path, dockyard_server: DockyardServer
) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(PULL_FOR_ALL))
    aws("ecr", "set-repository-policy", "--repository-name", repo, "--policy-text", f"file://{policy_file}")
    got = aws("ecr", "get-repository-policy", "--repository-name", repo)
    assert got["policyText"] == PULL_FOR_ALL_AS_PRINTED
    assert aws("ecr", "delete-repository-policy", "--repository-name", repo)["repositoryName"] == repo
    missing = aws("ecr", "get-repository-policy", "--repository-name", repo, check=False)
    assert missing.returncode == 255 and "RepositoryPolicyNotFoundException" in missing.stderr

    lockout_file = tmp_path / "lockout.json"
    lockout_file.write_text(json.dumps(LOCKOUT))
    refused = aws("ecr", "set-repository-policy", "--repository-name", repo, "--policy-text", f"file://{lockout_file}",
                  check=False)  # fmt: skip
    assert refused.returncode == 255 and "InvalidParameterException" in refused.stderr
    aws("ecr", "set-repository-policy", "--repository-name", repo, "--policy-text", f"file://{lockout_file}",
        "--force")  # fmt: skip
    aws("ecr", "delete-repository-policy", "--repository-name", repo)

    registry_file = tmp_path / "registry.json"
    registry_file.write_text(json.dumps(registry_policy(dockyard_server.account_id, dockyard_server.region)))
    assert aws("ecr", "put-registry-policy", "--policy-text", f"file://{registry_file}")["registryId"]
    assert "ReplicateIn" in aws("ecr", "get-registry-policy")["policyText"]
    aws("ecr", "delete-registry-policy")
    gone = aws("ecr", "get-registry-policy", check=False)
    assert gone.returncode == 255 and "RegistryPolicyNotFoundException" in gone.stderr
