"""The host a repository URI names: what a client must be able to reach, for any account and region."""

from types import SimpleNamespace
from typing import Any

import pytest

from dockyard.core.registry.repositories import registry_host


def services(public_host: str) -> Any:
    return SimpleNamespace(
        settings=SimpleNamespace(account_id="123456789012", region="us-east-1", public_host=public_host)
    )


@pytest.mark.parametrize(
    ("public_host", "account", "region", "expected"),
    [
        ("127.0.0.1:5000", "123456789012", "us-east-1", "127.0.0.1:5000"),
        ("127.0.0.1:5000", "123456789012", "us-east-2", "123456789012.dkr.ecr.us-east-2.localhost:5000"),
        ("[::1]:5000", "210987654321", "us-east-1", "210987654321.dkr.ecr.us-east-1.localhost:5000"),
        ("registry.example.com", "210987654321", "eu-west-1", "210987654321.dkr.ecr.eu-west-1.registry.example.com"),
        ("localhost:5000", "210987654321", "us-east-1", "210987654321.dkr.ecr.us-east-1.localhost:5000"),
        # An ECR-style name: other registries swap its account and region rather than nest.
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012",
            "us-west-2",
            "123456789012.dkr.ecr.us-west-2.amazonaws.com",
        ),
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "210987654321",
            "eu-west-1",
            "210987654321.dkr.ecr.eu-west-1.amazonaws.com",
        ),
        (
            "123456789012.dkr.ecr.us-east-1.registry.example.com:8443",
            "210987654321",
            "us-east-1",
            "210987654321.dkr.ecr.us-east-1.registry.example.com:8443",
        ),
    ],
)
def test_registry_host(public_host: str, account: str, region: str, expected: str) -> None:
    assert registry_host(services(public_host), account, region) == expected
