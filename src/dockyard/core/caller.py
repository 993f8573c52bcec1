"""Who is asking, and from where: what a door learned about a request before calling the core."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    account_id: str
    arn: str
    user_id: str
    # Root, IAMUser, AssumedRole, FederatedUser
    type: str
    username: str | None
    access_key_id: str | None
    # The region the request is addressed to (SigV4 scope, or the registry host name).
    region: str
    source_ip: str = ""
    user_agent: str = ""
    secure_transport: bool = False


def root_caller(account_id: str, region: str, access_key_id: str | None = None) -> Caller:
    return Caller(
        account_id=account_id,
        arn=f"arn:aws:iam::{account_id}:root",
        user_id=account_id,
        type="Root",
        username=None,
        access_key_id=access_key_id,
        region=region,
    )
