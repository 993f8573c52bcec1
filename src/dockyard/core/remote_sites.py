"""Other Dockyard deployments the operator names, and how this one signs in to them.

A site is a region another deployment serves (--replication-site REGION=URL), with the access
key this deployment uses there (--replication-site-credentials REGION=KEY_ID:SECRET). It is
reached as any ECR client reaches a registry: an ECR GetAuthorizationToken signed with SigV4
(botocore) under the site's key, then the OCI distribution API with HTTP Basic ("AWS" and the
token's password) on its registry door. Registry requests name the registry by its ECR host
name in the Host header, so the site serves the account and region the request means whatever
URL it is reached at. Replication pushes to sites; the pull through cache pulls from them
(an `ecr` upstream in a site's region)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.config import Settings

# httpx and botocore's signer (several MiB) are imported with the first request to a site
# (issue 19: memory at rest).
if TYPE_CHECKING:
    import httpx

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."


class SiteCredentialsMissing(Exception):
    """The operator named a site for the region but no access key to use there."""

    def __init__(self, region: str) -> None:
        super().__init__(f"No credentials are configured for the replication site of {region}")
        self.region = region


@dataclass(frozen=True)
class Site:
    region: str
    url: str
    access_key_id: str
    secret_access_key: str
    # Temporary credentials (a role assumed at the site) come with a session token.
    session_token: str | None = None


def configured_site(settings: Settings, region: str) -> Site | None:
    """The site serving `region`, if the operator named one; SiteCredentialsMissing without a key."""
    url = settings.replication_sites.get(region)
    if url is None:
        return None
    key_id, _, secret = settings.replication_site_credentials.get(region, "").partition(":")
    if not key_id or not secret:
        raise SiteCredentialsMissing(region)
    return Site(region, url.rstrip("/"), key_id, secret)


def registry_host(account_id: str, region: str) -> str:
    """The ECR host name of a registry: what a site's registry door reads the account from."""
    return f"{account_id}.dkr.ecr.{region}.amazonaws.com"


async def ecr_call(client: httpx.AsyncClient, site: Site, operation: str, body: dict[str, object]) -> httpx.Response:
    """An ECR API request to the site, signed with SigV4 under the site's access key."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET_PREFIX + operation}
    request = AWSRequest("POST", site.url + "/", data=data, headers=headers)
    credentials = Credentials(site.access_key_id, site.secret_access_key, site.session_token)
    SigV4Auth(credentials, "ecr", site.region).add_auth(request)
    return await client.post(site.url + "/", content=data, headers=dict(request.headers.items()))


def token_password(response: httpx.Response) -> tuple[str, float]:
    """The registry password in a GetAuthorizationToken answer (status 200), and when it expires
    (epoch seconds); KeyError, IndexError or ValueError if the answer has none."""
    data = response.json()["authorizationData"][0]
    password = base64.b64decode(data["authorizationToken"]).decode().partition(":")[2]
    return password, float(data.get("expiresAt", 0))


def basic_authorization(password: str) -> str:
    """The Authorization header of a registry request signed in with a token's password."""
    return "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode()
