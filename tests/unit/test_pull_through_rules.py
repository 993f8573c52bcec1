"""The pull through cache contract the data path relies on: which rule governs a repository (the
longest prefix, ROOT only for names no other rule covers), the upstream repository a cached one
stands for, and the credentials read from a rule's secret (sealed at rest)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from dockyard.config import Settings
from dockyard.core.errors import (
    SecretNotFoundException,
    UnableToAccessSecretException,
    UnableToDecryptSecretValueException,
)
from dockyard.core.identity.caller import root_caller
from dockyard.core.registry.pull_through_rules import (
    ROOT,
    CacheRule,
    rule_for_repository,
    upstream_base_url,
    upstream_repository,
)
from dockyard.core.secrets import secrets
from dockyard.core.secrets.values import upstream_credentials
from dockyard.core.services import Services
from dockyard.store import schema, sealed
from dockyard.store.database import upgrade_async

ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'metadata.db'}"
    await upgrade_async(url)
    services = Services.from_settings(Settings(data_dir=tmp_path, database_url=url))
    yield services
    await services.close()


def rule(prefix: str, upstream_prefix: str | None = None, url: str = "registry-1.docker.io") -> CacheRule:
    return CacheRule(0, ACCOUNT, REGION, prefix, url, "docker-hub", upstream_prefix, None, None, 0.0, 0.0)


async def add_rules(svc: Services, *prefixes: str) -> None:
    async with svc.db.write() as conn:
        for prefix in prefixes:
            await conn.execute(
                insert(schema.pull_through_cache_rules).values(
                    account_id=ACCOUNT,
                    region=REGION,
                    ecr_repository_prefix=prefix,
                    upstream_registry_url=f"{prefix.lower()}.example",
                    upstream_registry="quay",
                    created_at=1.0,
                    updated_at=1.0,
                )
            )


async def governing(svc: Services, name: str, region: str = REGION) -> str | None:
    async with svc.db.read() as conn:
        found = await rule_for_repository(conn, ACCOUNT, region, name)
    return None if found is None else found.ecr_repository_prefix


async def test_the_longest_prefix_governs_and_root_takes_the_rest(svc: Services) -> None:
    await add_rules(svc, "hub", "hub/team", ROOT)
    assert await governing(svc, "hub/library/alpine") == "hub"
    assert await governing(svc, "hub/team/app") == "hub/team"
    assert await governing(svc, "hubx/alpine") == ROOT
    assert await governing(svc, "hub") == ROOT  # the prefix alone names no repository under it
    assert await governing(svc, "alpine") == ROOT
    assert await governing(svc, "hub/library/alpine", region="eu-west-1") is None


async def test_no_rule_no_match(svc: Services) -> None:
    await add_rules(svc, "quay")
    assert await governing(svc, "docker/alpine") is None
    assert await governing(svc, "quay/coreos/etcd") == "quay"


def test_upstream_repository_maps_as_ecr_does() -> None:
    assert upstream_repository(rule("docker-hub"), "docker-hub/library/alpine") == "library/alpine"
    # ECR adds no library/: a Docker Hub official image is pulled as <prefix>/library/<name>.
    assert upstream_repository(rule("docker-hub"), "docker-hub/alpine") == "alpine"
    assert upstream_repository(rule(ROOT), "my-app/image1") == "my-app/image1"
    assert upstream_repository(rule("team-a", "team-a"), "team-a/myapp/image1") == "team-a/myapp/image1"
    assert upstream_repository(rule("my-app", "upstream-app"), "my-app/image1") == "upstream-app/image1"
    assert upstream_repository(rule("ecr-public", ROOT), "ecr-public/my-app/image2") == "my-app/image2"


def test_upstream_base_url_is_https_unless_a_scheme_is_given() -> None:
    assert upstream_base_url(rule("hub")) == "https://registry-1.docker.io"
    assert upstream_base_url(rule("hub", url="http://127.0.0.1:5000/")) == "http://127.0.0.1:5000"


async def make_secret(svc: Services, name: str, value: str) -> str:
    created: dict[str, Any] = await secrets.create_secret(
        svc, root_caller(ACCOUNT, REGION), name, secrets.NewValue(value, None, None), None, None, []
    )
    return str(created["ARN"])


async def test_upstream_credentials_from_the_secret(svc: Services, tmp_path: Path) -> None:
    good = await make_secret(svc, "ecr-pullthroughcache/hub", json.dumps({"username": "u", "accessToken": "t0k"}))
    assert await upstream_credentials(svc, ACCOUNT, REGION, good) == ("u", "t0k")
    assert await upstream_credentials(svc, ACCOUNT, REGION, good[:-7]) == ("u", "t0k")  # a partial ARN
    database = (tmp_path / "metadata.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("*-wal"))
    assert b"t0k" not in database
    with pytest.raises(SecretNotFoundException):
        await upstream_credentials(svc, ACCOUNT, REGION, good.replace("hub", "nothing"))
    with pytest.raises(SecretNotFoundException):
        await upstream_credentials(svc, ACCOUNT, "eu-west-1", good)
    not_json = await make_secret(svc, "ecr-pullthroughcache/plain", "just a string")
    with pytest.raises(UnableToAccessSecretException):
        await upstream_credentials(svc, ACCOUNT, REGION, not_json)
    await secrets.delete_secret(svc, root_caller(ACCOUNT, REGION), good, None, False)
    with pytest.raises(UnableToAccessSecretException):
        await upstream_credentials(svc, ACCOUNT, REGION, good)
    other = await make_secret(svc, "ecr-pullthroughcache/other", json.dumps({"username": "u", "accessToken": "t"}))
    sealed.write_ring(tmp_path / "secrets.key", [bytes(32)])  # the key file replaced: nothing opens
    with pytest.raises(UnableToDecryptSecretValueException):
        await upstream_credentials(svc, ACCOUNT, REGION, other)
