"""nextToken handling: opaque to clients, a position in a sorted listing to us."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from dockyard.core import client_json as wire_json
from dockyard.core.errors import InvalidParameterException


def encode_token(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def decode_token(token: str | None) -> Any:
    if token is None:
        return None
    try:
        return wire_json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise InvalidParameterException(
            "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'"
        ) from exc


def page_size(max_results: int | None, default: int, limit: int = 1000) -> int:
    return min(max_results or default, limit)
