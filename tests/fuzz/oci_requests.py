"""Requests for the OCI distribution routes: random and malformed names, references, digests,
headers and bodies, sent with http.client so that the path and the headers (Content-Length
included) go out exactly as drawn."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

from hypothesis import strategies as st

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DEEP = 50_000
# Bigger than the 4 MiB a manifest may be, small enough to send hundreds of times in CI.
OVERSIZED = 5 * 1024 * 1024
REQUEST_TIMEOUT = 60.0

LengthLie = Literal["short", "long"] | None


@dataclass(frozen=True)
class Known:
    """What the module pushed, so drawn requests can name things that exist."""

    repositories: tuple[str, ...]
    manifest_digest: str
    blob_digest: str
    tag: str


@dataclass(frozen=True)
class OciRequest:
    method: str
    path: str
    headers: dict[str, str | bytes] = field(default_factory=dict)
    body: bytes = b""
    # "short": Content-Length below the body's size; "long": above it, and the client gone once
    # the body is out (a client that dies mid-upload). A Content-Length in `headers` is sent as
    # it is, with no body.
    length_lie: LengthLie = None

    def describe(self) -> str:
        lie = f" Content-Length {self.length_lie}" if self.length_lie else ""
        return f"{self.method} {self.path[:300]} headers={self.headers!r:.300} body={self.body[:200]!r}{lie}"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    location: str | None = None


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic_auth(password: str) -> str:
    return "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode()


def send(host: str, port: int, authorization: str, request: OciRequest) -> Answer | None:
    """The answer, or None when there is none to judge: the request left the body unfinished
    and went away, or the server refused the body before reading it all and closed the
    connection while it was still being sent (an answer it sent then may be lost with it)."""
    connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT)
    try:
        connection.putrequest(request.method, request.path, skip_accept_encoding=True)
        headers: dict[str, str | bytes] = {"Authorization": authorization, **request.headers}
        if "Content-Length" not in headers and (request.body or request.method in ("PUT", "POST", "PATCH")):
            headers["Content-Length"] = str(_declared_length(request))
        for name, value in headers.items():
            connection.putheader(name, value)
        try:
            connection.endheaders(request.body or None)
        except (BrokenPipeError, ConnectionResetError):
            return _answer_if_any(connection)
        if request.length_lie == "long":
            return None
        if "Content-Length" in request.headers:
            # A length the server cannot read: closing our side ends any wait for the body.
            assert connection.sock is not None
            connection.sock.shutdown(socket.SHUT_WR)
        return _read_answer(connection)
    finally:
        connection.close()


def _read_answer(connection: http.client.HTTPConnection) -> Answer:
    response = connection.getresponse()
    return Answer(response.status, response.read(), response.getheader("Location"))


def _answer_if_any(connection: http.client.HTTPConnection) -> Answer | None:
    try:
        return _read_answer(connection)
    except (http.client.HTTPException, OSError):
        return None


def _declared_length(request: OciRequest) -> int:
    if request.length_lie == "short":
        return max(len(request.body) - 1 - len(request.body) // 2, 0)
    if request.length_lie == "long":
        return len(request.body) + 1 + len(request.body)
    return len(request.body)


# --- Path parts ---------------------------------------------------------------------------------


def path_part(text: str) -> str:
    """Percent-encode what http.client cannot put on a request line, keeping escapes drawn as such
    ("%2F" stays three characters) and lone surrogates as the bytes ED A0 80."""
    return urllib.parse.quote(text, safe="/%:@+!$&'()*,;=~", errors="surrogatepass")


BAD_NAMES = (
    "",
    "a",
    "A",
    "UPPER/case",
    "a" * 300,
    "a/" * 200 + "a",
    "..",
    "../fuzz-oci",
    "fuzz-oci/..",
    "fuzz-oci/../fuzz-oci",
    "a//b",
    "%2F",
    "fuzz-oci%2Fx",
    "%2e%2e",
    "%2e%2e%2ffuzz-oci",
    "%00",
    "%FF%FE",
    "%ED%A0%80",
    "répo",
    "ünïcödé/name",
    "\u202e",
    "fuzz-\ud800",
    "_catalog",
    "tags",
    "blobs",
    "manifests",
    "v2",
    "-leading",
    "trailing-",
    "a..b",
    "a__b",
    "a___b",
)

BAD_TAGS = ("", "-x", ".x", "a" * 129, "a" * 5000, "..", "%2e%2e", "t%2Fx", "tä", "\ud800", "%00", "latest%20", "*")
BAD_DIGESTS = (
    "sha256:",
    ":",
    "sha256",
    "sha256:" + "0" * 63,
    "sha256:" + "0" * 65,
    "sha256:" + "A" * 64,
    "SHA256:" + "0" * 64,
    "sha256:" + "g" * 64,
    "sha512:" + "0" * 64,
    "sha512:" + "0" * 128,
    "sha384:" + "0" * 96,
    "md5:" + "0" * 32,
    "sha256+b64u:" + "A" * 43,
    "sha256:" + "0" * 10_000,
    "a" * 300 + ":" + "0" * 64,
    "sha256:%00",
    "sha256:\ud800",
    "sha256:" + "0" * 32 + "%2F" + "0" * 29,
)


def names(known: Known) -> st.SearchStrategy[str]:
    valid = st.from_regex(r"[a-z0-9]{2,10}(?:[._-][a-z0-9]{1,5}){0,2}(?:/[a-z0-9]{1,8}){0,2}", fullmatch=True)
    return st.one_of(st.sampled_from(known.repositories), st.sampled_from(BAD_NAMES), valid, st.text(max_size=30))


def digests(known: Known) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from((known.manifest_digest, known.blob_digest)),
        st.sampled_from(BAD_DIGESTS),
        st.binary(max_size=8).map(digest_of),
        st.text(max_size=80),
    )


def references(known: Known) -> st.SearchStrategy[str]:
    tags = st.from_regex(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}", fullmatch=True)
    return st.one_of(st.just(known.tag), tags, st.sampled_from(BAD_TAGS), digests(known))


# --- Headers ------------------------------------------------------------------------------------

GARBAGE_HEADER_VALUES: tuple[str | bytes, ...] = (
    "",
    " ",
    "garbage",
    "x" * 8000,
    b"\xff\xfe",
    b"\xed\xa0\x80",
    "\t",
    "-1",
    "99999999999999999999999999",
)
CONTENT_RANGES = (
    "0-0",
    "0-",
    "-1",
    "5-1",
    "a-b",
    "0-99999999999999999999999999",
    "bytes=0-1",
    "bytes 0-1/*",
    "0-1/2",
    "1-2",
    "00000000000000000000000000000-1",
    "0--1",
)
RANGES = (
    "bytes=0-",
    "bytes=0-0",
    "bytes=-0",
    "bytes=-1",
    "bytes=5-1",
    "bytes=0-1,2-3",
    "bytes=99999999999999999999999-",
    "bytes=-99999999999999999999999",
    "bytes=1-99999999999999999999999",
    "items=0-1",
    "bytes=",
    "bytes=-",
)
ACCEPTS = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, "*/*", "application/json", "text/html;q=0")
CONTENT_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, "application/json", "text/plain")


def headers() -> st.SearchStrategy[dict[str, str | bytes]]:
    garbage = st.sampled_from(GARBAGE_HEADER_VALUES)
    return st.fixed_dictionaries(
        {},
        optional={
            "Content-Type": st.one_of(st.sampled_from(CONTENT_TYPES), garbage),
            "Content-Range": st.one_of(st.sampled_from(CONTENT_RANGES), garbage),
            "Range": st.one_of(st.sampled_from(RANGES), garbage),
            "Accept": st.one_of(
                st.lists(st.sampled_from(ACCEPTS), max_size=4).map(", ".join),
                garbage,
                st.just(", ".join([OCI_MANIFEST] * 2000)),
            ),
            "If-None-Match": st.one_of(st.just("*"), garbage),
        },
    )


# --- Bodies -------------------------------------------------------------------------------------


def manifest(known: Known, **changes: object) -> dict[str, object]:
    document: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": known.blob_digest, "size": 2},
        "layers": [],
    }
    document.update(changes)
    return document


def json_values() -> st.SearchStrategy[object]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.sampled_from(("\ud800", ""))
    )
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
        max_leaves=10,
    )


def manifest_bodies(known: Known) -> st.SearchStrategy[bytes]:
    """Manifests a little or very wrong, as JSON and not."""
    members = st.sampled_from(("schemaVersion", "mediaType", "config", "layers", "manifests", "subject", "annotations"))
    changed = st.builds(lambda key, value: manifest(known, **{key: value}), members, json_values())
    return st.one_of(
        changed.map(lambda document: json.dumps(document).encode()),
        st.binary(max_size=512),
        st.sampled_from(
            (
                b"",
                b"[" * DEEP,
                b'{"schemaVersion": 2, "layers": ' + b"[" * DEEP + b"]" * DEEP + b"}",
                b'{"a":' * DEEP + b"1" + b"}" * DEEP,
                json.dumps(manifest(known, mediaType="\ud800")).encode(),
                json.dumps(manifest(known, annotations={"\udfff": "x"})).encode(),
                json.dumps(manifest(known, layers=[{"digest": known.blob_digest, "size": 2}] * 20_000)).encode(),
                b'{"schemaVersion": 2, "mediaType": "\xff\xfe"}',
                b"\xef\xbb\xbf" + json.dumps(manifest(known)).encode(),
                b'{"schemaVersion": 1e999}',
                b'{"schemaVersion": NaN}',
                json.dumps(manifest(known, config={"digest": "sha256:" + "0" * 64, "size": -1})).encode(),
                json.dumps(manifest(known, subject={"digest": "sha256:\ud800", "size": 2**70})).encode(),
                b" " * OVERSIZED,
            )
        ),
    )


def blob_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=4096), st.sampled_from((b"", b"\x00" * (1024 * 1024 + 7))))
