"""Every ECR, IAM, STS and CloudTrail operation, with valid-ish, broken and malformed bodies: the
server answers each with a 4xx or a 2xx, never a 5xx, logs no traceback and restarts no worker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given

from tests.fuzz.aws_requests import (
    FORM_TYPE,
    JSON_TYPE,
    SERVICES,
    AwsSender,
    bodies,
    encode,
    is_query,
    malformed_bodies,
    operations,
    service_model,
)
from tests.fuzz.harness import ServerWatch, fuzz_settings
from tests.support.server import DockyardServer

EXAMPLES = 10
CASES = [(service, operation) for service in SERVICES for operation in operations(service)]


@pytest.fixture(scope="module")
def sender(fuzz_server: DockyardServer) -> Iterator[AwsSender]:
    """A sender, and things for drawn names to find: two repositories and a user."""
    with httpx.Client(base_url=fuzz_server.url, timeout=60) as client:
        sender = AwsSender(fuzz_server, client)
        create_repository = service_model("ecr").operation_model("CreateRepository")
        create_user = service_model("iam").operation_model("CreateUser")
        for model, body in (
            (create_repository, {"repositoryName": "fuzz-repo"}),
            (create_repository, {"repositoryName": "fuzz/nested-repo"}),
            (create_user, {"UserName": "fuzz-user"}),
        ):
            created = sender.send(model, encode(model, body))
            assert created.status_code == 200, created.text
        yield sender


@pytest.mark.parametrize(("service", "operation"), CASES, ids=[f"{s}.{o}" for s, o in CASES])
def test_operation_never_fails_on_the_server(
    service: str, operation: str, sender: AwsSender, watch: ServerWatch, fuzz_server: DockyardServer
) -> None:
    model = service_model(service).operation_model(operation)
    query = is_query(service)

    previous = ["(none)"]

    def check(what: str, raw: bytes, content_type: str | None = None) -> None:
        sent = f"{service}.{operation} {what} {raw!r:.300}"
        log_from = watch.before_request()
        try:
            response = sender.send(model, raw, content_type)
        except httpx.TransportError as error:
            watch.dropped(sent, error, previous[0])
        else:
            watch.answered(response.status_code, sent, response.content, log_from)
        previous[0] = sent

    @fuzz_settings(EXAMPLES)
    @given(body=bodies(model, query))
    def drawn(body: dict[str, Any]) -> None:
        check("(drawn)", encode(model, body))

    drawn()
    for name, raw in malformed_bodies(model):
        check(f"({name})", raw)
    # The other protocol's content type on a body of this one's.
    other = JSON_TYPE if query else FORM_TYPE
    check(f"(as {other})", encode(model, {}), other)
    watch.assert_intact()


def test_server_survived(watch: ServerWatch) -> None:
    """After the whole module: the same workers, /healthz, and no traceback anywhere in the log."""
    watch.log_offset = 0
    watch.assert_intact()
