"""`--registry-host` with an ECR-style name (what Amazon's docker-credential-ecr-login recognises):
the registries of other regions and accounts are named by swapping the account and region parts."""

from __future__ import annotations

from tests.support.clients import AwsCli
from tests.support.identities import suffix
from tests.support.server import ServerFactory

ECR_STYLE = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def test_ecr_style_registry_host_names_other_regions_by_their_parts(
    dockyard_server_factory: ServerFactory,
) -> None:
    server = dockyard_server_factory(registry_host=ECR_STYLE)
    aws = AwsCli(server)
    [home] = aws("ecr", "get-authorization-token")["authorizationData"]
    assert home["proxyEndpoint"] == f"http://{ECR_STYLE}"
    [west] = aws("ecr", "get-authorization-token", "--region", "us-west-2")["authorizationData"]
    assert west["proxyEndpoint"] == "http://123456789012.dkr.ecr.us-west-2.amazonaws.com"
    name = f"hosts-{suffix()}"
    aws("ecr", "create-repository", "--repository-name", name, "--region", "us-west-2")
    aws("ecr", "create-repository", "--repository-name", name)
    [west_repository] = aws("ecr", "describe-repositories", "--region", "us-west-2", "--repository-names", name)[
        "repositories"
    ]
    assert west_repository["repositoryUri"] == f"123456789012.dkr.ecr.us-west-2.amazonaws.com/{name}"
    [home_repository] = aws("ecr", "describe-repositories", "--repository-names", name)["repositories"]
    assert home_repository["repositoryUri"] == f"{ECR_STYLE}/{name}"
