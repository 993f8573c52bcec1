"""Where a request came from, as the policy engine's global condition keys need it."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request

from dockyard.core.identity.caller import Caller


def with_origin(caller: Caller, request: Request) -> Caller:
    client = request.client
    return dataclasses.replace(
        caller,
        source_ip=client.host if client else "",
        user_agent=request.headers.get("user-agent", ""),
        secure_transport=request.url.scheme == "https",
    )
