"""Reading a request body into memory, never more of it than its API allows.

Every door that needs a whole body before it can act (the AWS APIs verify a signature over it,
a manifest is hashed and parsed) reads it through :func:`read_body` with that API's limit; each
door answers :class:`BodyTooLarge` with a 413 in its own error format. The check comes before
authentication, so an anonymous client cannot make the server hold more than one limit's worth
per request. Blob uploads are streams written to disk and do not come here.

The limits are the largest body a legitimate request of each API can have:

* ECR: UploadLayerPart carries the biggest, a layer part of at most 10 MiB (ECR's "maximum layer
  part size" quota, ``uploads.MAX_PART_SIZE``) base64-encoded in JSON, plus room for the other
  members. PutImage's manifest (at most 4 MiB) fits too, even if JSON escaping doubles it.
* IAM and STS (one door, told apart only once the body is read): the largest member is a policy
  document, at most 131,072 characters in IAM's model, each in U+0009..U+00FF, so at most six
  bytes once UTF-8 and percent-encoded: 768 KiB. 1 MiB holds one such document and the rest of
  the form; IAM's quotas keep real documents far smaller (6,144 characters for a managed policy).
* CloudTrail LookupEvents: one lookup attribute, two times, a page size and a NextToken; a few
  KiB at most, 64 KiB is generous.
"""

from __future__ import annotations

import math
import re

from starlette.requests import Request
from starlette.responses import Response

from dockyard.core.registry.uploads import MAX_PART_SIZE

_JSON_ROOM = 64 * 1024
ECR_BODY_LIMIT = 4 * math.ceil(MAX_PART_SIZE / 3) + _JSON_ROOM
QUERY_BODY_LIMIT = 1024 * 1024
CLOUDTRAIL_BODY_LIMIT = 64 * 1024

_DIGITS = re.compile(r"[0-9]+")


class BodyTooLarge(Exception):
    """The body is (or has grown) over `limit` bytes; nothing past the limit was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit

    @property
    def message(self) -> str:
        return f"Request must be smaller than {self.limit} bytes"


def declared_length(request: Request) -> int | None:
    """The Content-Length the client declared, None when absent or not a number."""
    value = request.headers.get("content-length", "").strip()
    return int(value) if _DIGITS.fullmatch(value) else None


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or BodyTooLarge as soon as it is known to pass `limit`: at once from its
    Content-Length, without reading a byte, or while reading a chunked body of no declared size."""
    length = declared_length(request)
    if length is not None and length > limit:
        raise BodyTooLarge(limit)
    data = bytearray()
    async for chunk in request.stream():
        if len(data) + len(chunk) > limit:
            raise BodyTooLarge(limit)
        data += chunk
    return bytes(data)


# A body refused unread is still on its way: the server closes the connection after the answer,
# and says so, so a client does not send its next request down a connection about to close.
CLOSE = {"Connection": "close"}


def refused(response: Response) -> Response:
    """`response` to a body refused as too large, telling the client the connection closes."""
    response.headers.update(CLOSE)
    return response
