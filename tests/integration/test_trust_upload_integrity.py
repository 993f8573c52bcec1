"""No tenant can touch another's bytes: the attack of racing PATCHes on one upload, across workers.

Account B, allowed to push only to its own repository, opens an upload there and sends two PATCHes
for the same range at once on two connections (so two worker processes take them), one with the
real bytes of a layer of account A's image and one with other bytes of the same length, then
finishes the upload naming the digest of A's layer. Whatever the timing, A's layer must keep
serving exactly A's bytes, the two PATCHes must leave one of them refused with 416, and B's upload
must be what its accepted PATCH sent."""

from __future__ import annotations

import base64
import hashlib
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.clients import Boto3Clients, isolated_boto3_session
from tests.support.identities import SECOND_ACCOUNT_ID, ensure_account, suffix
from tests.support.registry_http import RegistryHttp, digest_of
from tests.support.server import DockyardServer

ATTEMPTS = 30
LAYER_SIZE = 2 * 1024 * 1024


@dataclass
class Tenant:
    """One account's registry as raw HTTP: its host name picks the registry, its token the caller."""

    base: str
    host: str
    password: str

    def request(self, method: str, path: str, **kw: object) -> requests.Response:
        # The upload's Location may name the node that opened it: any node may continue it.
        url = self.base + urlsplit(path)._replace(scheme="", netloc="").geturl()
        headers = {"Host": self.host, **dict(kw.pop("headers", {}) or {})}  # type: ignore[call-overload]
        # A new connection each time: the kernel spreads connections over the worker processes.
        with requests.Session() as session:
            return session.request(method, url, auth=("AWS", self.password), headers=headers, timeout=60, **kw)  # type: ignore[arg-type]


def race_same_range(
    tenants: tuple[Tenant, Tenant], repository: str, bodies: tuple[bytes, bytes]
) -> tuple[list[int], str]:
    """Open an upload, PATCH both bodies for bytes 0..n-1 at once, the first through the first
    tenant's address, the second through the second's; the statuses and the upload's path."""
    started = tenants[0].request("POST", f"/v2/{repository}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    barrier = threading.Barrier(2)
    statuses: list[int] = [0, 0]

    def patch(index: int) -> None:
        body = bodies[index]
        barrier.wait(timeout=60)
        answer = tenants[index].request(
            "PATCH",
            location,
            data=body,
            headers={"Content-Range": f"0-{len(body) - 1}", "Content-Type": "application/octet-stream"},
        )
        statuses[index] = answer.status_code

    threads = [threading.Thread(target=patch, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses, location


def attack(
    victim_blob: Callable[[], bytes],
    attackers: tuple[Tenant, Tenant],
    attacker_repository: str,
    layer: bytes,
    attempts: int = ATTEMPTS,
) -> None:
    """Run the race `attempts` times, checking the victim's layer after each."""
    digest = digest_of(layer)
    rng = random.Random(7)
    for attempt in range(attempts):
        other = rng.randbytes(len(layer))
        # Alternate which body goes first, so either may win the race.
        bodies = (layer, other) if attempt % 2 == 0 else (other, layer)
        statuses, location = race_same_range(attackers, attacker_repository, bodies)
        finished = attackers[0].request("PUT", location, params={"digest": digest})
        served = victim_blob()
        assert hashlib.sha256(served).hexdigest() == digest.split(":")[1], f"attempt {attempt}: victim's layer changed"
        assert sorted(statuses) == [202, 416], f"attempt {attempt}: PATCH statuses {statuses}"
        winner = bodies[statuses.index(202)]
        if winner == layer:
            assert finished.status_code == 201, f"attempt {attempt}: {finished.status_code} {finished.text}"
        else:
            assert finished.status_code == 400 and "DIGEST_INVALID" in finished.text, (
                f"attempt {attempt}: the upload holds other bytes, yet PUT answered {finished.status_code}"
            )
        if finished.status_code == 201:
            own = attackers[1].request("GET", f"/v2/{attacker_repository}/blobs/{digest}")
            assert own.status_code == 200 and own.content == layer


@dataclass
class Accounts:
    victim: RegistryHttp
    victim_ecr: Any
    attacker: Tenant
    attacker_ecr: Any


@pytest.fixture(scope="module")
def accounts(dockyard_server: DockyardServer) -> Accounts:
    other = ensure_account(dockyard_server, SECOND_ACCOUNT_ID)
    ecr = isolated_boto3_session(dockyard_server).client(
        "ecr",
        endpoint_url=dockyard_server.url,
        region_name=dockyard_server.region,
        aws_access_key_id=other.access_key_id,
        aws_secret_access_key=other.secret_access_key,
    )
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).decode().partition(":")[2]
    host = f"{SECOND_ACCOUNT_ID}.dkr.ecr.{dockyard_server.region}.localhost:{dockyard_server.port}"
    victim = RegistryHttp.for_server(dockyard_server)
    return Accounts(victim, Boto3Clients(dockyard_server)("ecr"), Tenant(dockyard_server.url, host, password), ecr)


def test_racing_patches_cannot_replace_another_accounts_layer(accounts: Accounts) -> None:
    victim = accounts.victim
    name = f"victim-{suffix()}"
    layer = random.Random(1).randbytes(LAYER_SIZE)
    accounts.victim_ecr.create_repository(repositoryName=name)
    victim.push_image(name, "v1", [layer])
    layer_digest = digest_of(layer)
    mine = f"mine-{suffix()}"
    accounts.attacker_ecr.create_repository(repositoryName=mine)

    def victim_blob() -> bytes:
        answer = victim.request("GET", f"/v2/{name}/blobs/{layer_digest}")
        assert answer.status_code == 200, answer.text
        return answer.content

    attack(victim_blob, (accounts.attacker, accounts.attacker), mine, layer)
