"""The OCI distribution routes with random and malformed names, references, digests, headers and
bodies: the server answers each with a 2xx, 3xx or 4xx, never a 5xx, logs no traceback and restarts
no worker."""

from __future__ import annotations

import contextlib
import http.client
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import ServerWatch, fuzz_settings
from tests.fuzz.oci_requests import (
    BAD_DIGESTS,
    BAD_NAMES,
    BAD_TAGS,
    CONTENT_RANGES,
    Answer,
    Known,
    OciRequest,
    basic_auth,
    blob_bodies,
    digests,
    headers,
    manifest_bodies,
    names,
    path_part,
    references,
    send,
)
from tests.support.clients import Boto3Clients
from tests.support.registry_http import RegistryHttp
from tests.support.server import DockyardServer

METHODS = ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS")
REPOSITORIES = ("fuzz-oci", "fuzz/oci-nested")
TAG = "v1"
QUERY_VALUES = ("", "0", "-1", "1", "99999999999999999999", "abc", "%FF", "%ED%A0%80", "a" * 5000, "fuzz-oci")

Sender = Callable[[OciRequest], Answer | None]


@pytest.fixture(scope="module")
def known(fuzz_server: DockyardServer) -> Known:
    ecr = Boto3Clients(fuzz_server)("ecr")
    for name in REPOSITORIES:
        with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
            ecr.create_repository(repositoryName=name)
    registry = RegistryHttp.for_server(fuzz_server)
    manifest_digest, _ = registry.push_image(REPOSITORIES[0], TAG, [b"fuzz layer"])
    blob_digest = registry.push_blob(REPOSITORIES[0], b"{}")
    return Known(REPOSITORIES, manifest_digest, blob_digest, TAG)


@pytest.fixture(scope="module")
def oci(fuzz_server: DockyardServer, known: Known, server_watch: ServerWatch) -> Sender:
    """Sends one request and records it with the watch when the answer is a 5xx."""
    authorization = basic_auth(RegistryHttp.for_server(fuzz_server).password)

    previous = ["(none)"]

    def sender(request: OciRequest) -> Answer | None:
        log_from = server_watch.before_request()
        try:
            answer = send(fuzz_server.host, fuzz_server.port, authorization, request)
        except (http.client.HTTPException, OSError) as error:
            server_watch.dropped(request.describe(), error, previous[0])
            answer = None
        else:
            if answer is not None:
                server_watch.answered(answer.status, request.describe(), answer.body, log_from)
        previous[0] = request.describe()
        return answer

    return sender


def queries(*keys: str) -> st.SearchStrategy[str]:
    values = st.one_of(st.sampled_from(QUERY_VALUES), st.text(max_size=20).map(path_part))
    pairs = st.lists(st.tuples(st.sampled_from(keys), values), max_size=3)
    return pairs.map(lambda drawn: ("?" + "&".join(f"{k}={v}" for k, v in drawn)) if drawn else "")


@st.composite
def route_paths(draw: st.DrawFn, known: Known) -> str:
    name = path_part(draw(names(known)))
    route = draw(st.integers(0, 9))
    if route == 0:
        return draw(st.sampled_from(("/v2/", "/v2", "/v2/_catalog"))) + draw(queries("n", "last"))
    if route == 1:
        return f"/v2/{name}/tags/list" + draw(queries("n", "last"))
    if route in (2, 3):
        return f"/v2/{name}/manifests/{path_part(draw(references(known)))}"
    if route in (4, 5):
        return f"/v2/{name}/blobs/{path_part(draw(digests(known)))}"
    if route == 6:
        return f"/v2/{name}/blobs/uploads/" + draw(queries("digest", "mount", "from"))
    if route == 7:
        upload = draw(st.one_of(st.uuids().map(str), st.text(max_size=40)))
        return f"/v2/{name}/blobs/uploads/{path_part(upload)}" + draw(queries("digest", "_state"))
    if route == 8:
        return f"/v2/{name}/referrers/{path_part(draw(digests(known)))}" + draw(queries("artifactType"))
    return "/v2/" + path_part(draw(st.text(max_size=60)))


def test_routes(known: Known, oci: Sender, watch: ServerWatch, fuzz_server: DockyardServer) -> None:
    @fuzz_settings(400)
    @given(method=st.sampled_from(METHODS), path=route_paths(known), headers=headers(), body=blob_bodies())
    def drawn(method: str, path: str, headers: dict[str, str | bytes], body: bytes) -> None:
        oci(OciRequest(method, path, headers, body if method in ("PUT", "POST", "PATCH") else b""))

    drawn()
    watch.assert_intact()


def test_fixed_names_references_and_digests(
    known: Known, oci: Sender, watch: ServerWatch, fuzz_server: DockyardServer
) -> None:
    """Every malformed name, tag and digest on every route that takes one."""
    repository = known.repositories[0]
    for name in map(path_part, BAD_NAMES):
        for method in ("GET", "HEAD", "PUT", "DELETE"):
            oci(OciRequest(method, f"/v2/{name}/manifests/{TAG}"))
        oci(OciRequest("GET", f"/v2/{name}/tags/list"))
        oci(OciRequest("GET", f"/v2/{name}/blobs/{known.blob_digest}"))
        oci(OciRequest("POST", f"/v2/{name}/blobs/uploads/"))
        oci(OciRequest("GET", f"/v2/{name}/referrers/{known.manifest_digest}"))
        oci(OciRequest("POST", f"/v2/{repository}/blobs/uploads/?mount={known.blob_digest}&from={name}"))
    for tag in map(path_part, BAD_TAGS):
        for method in ("GET", "HEAD", "PUT", "DELETE"):
            oci(OciRequest(method, f"/v2/{repository}/manifests/{tag}"))
    for digest in map(path_part, BAD_DIGESTS):
        for method in ("GET", "HEAD", "DELETE"):
            oci(OciRequest(method, f"/v2/{repository}/manifests/{digest}"))
            oci(OciRequest(method, f"/v2/{repository}/blobs/{digest}"))
        oci(OciRequest("GET", f"/v2/{repository}/referrers/{digest}"))
        oci(OciRequest("POST", f"/v2/{repository}/blobs/uploads/?digest={digest}", body=b"x"))
        oci(OciRequest("POST", f"/v2/{repository}/blobs/uploads/?mount={digest}&from={repository}"))
    watch.assert_intact()


def test_manifest_puts(known: Known, oci: Sender, watch: ServerWatch, fuzz_server: DockyardServer) -> None:
    @fuzz_settings(150)
    @given(
        reference=st.one_of(st.just(TAG), references(known)),
        headers=headers(),
        body=manifest_bodies(known),
    )
    def drawn(reference: str, headers: dict[str, str | bytes], body: bytes) -> None:
        headers.pop("Content-Range", None)
        oci(OciRequest("PUT", f"/v2/{known.repositories[0]}/manifests/{path_part(reference)}", headers, body))

    drawn()
    watch.assert_intact()


def _start_upload(oci: Sender, repository: str) -> str:
    started = oci(OciRequest("POST", f"/v2/{repository}/blobs/uploads/"))
    assert started is not None and started.status == 202 and started.location, started
    return started.location


def with_query(location: str, query: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}{query}"


def test_uploads(known: Known, oci: Sender, watch: ServerWatch, fuzz_server: DockyardServer) -> None:
    """A real upload, then PATCH, PUT, GET and DELETE on it with drawn ranges, digests and bodies."""
    steps = st.tuples(
        st.sampled_from(("PATCH", "PATCH", "PUT", "GET", "DELETE")),
        st.one_of(st.none(), st.sampled_from(CONTENT_RANGES)),
        st.one_of(st.none(), digests(known)),
        blob_bodies(),
    )

    @fuzz_settings(80)
    @given(plan=st.lists(steps, min_size=1, max_size=4))
    def drawn(plan: list[tuple[str, str | None, str | None, bytes]]) -> None:
        location = _start_upload(oci, known.repositories[0])
        for method, content_range, digest, body in plan:
            headers: dict[str, str | bytes] = {"Content-Type": "application/octet-stream"}
            if content_range is not None:
                headers["Content-Range"] = content_range
            target = with_query(location, f"digest={path_part(digest)}") if digest is not None else location
            oci(OciRequest(method, target, headers, body if method in ("PATCH", "PUT") else b""))

    drawn()
    watch.assert_intact()


def test_content_length_lies(known: Known, oci: Sender, watch: ServerWatch, fuzz_server: DockyardServer) -> None:
    """Bodies longer and shorter than their Content-Length, and lengths no one can read."""
    repository = known.repositories[0]
    body = b"0123456789" * 100
    for lie in ("short", "long"):
        oci(OciRequest("PUT", f"/v2/{repository}/manifests/lie-{lie}", {"Content-Type": "x"}, body, lie))
        oci(OciRequest("POST", f"/v2/{repository}/blobs/uploads/", {}, body, lie))
        location = _start_upload(oci, repository)
        oci(OciRequest("PATCH", location, {"Content-Range": f"0-{len(body) - 1}"}, body, lie))
        location = _start_upload(oci, repository)
        oci(OciRequest("PUT", with_query(location, f"digest=sha256:{'0' * 64}"), {}, body, lie))
    for length in ("-1", "abc", "99999999999999999999", " 1", "1e3", "1, 2"):
        oci(OciRequest("PUT", f"/v2/{repository}/manifests/lie", {"Content-Length": length}))
        oci(OciRequest("PATCH", _start_upload(oci, repository), {"Content-Length": length}))
    watch.assert_intact()


def test_server_survived(watch: ServerWatch) -> None:
    """After the whole module: the same workers, /healthz, and no traceback anywhere in the log."""
    watch.log_offset = 0
    watch.assert_intact()
