"""ECR-to-ECR pull through: an `ecr` upstream that another Dockyard deployment serves.

Real ECR signs in to an upstream ECR with the downstream registry's IAM identity, or with a role
it assumes (customRoleArn). Dockyard's identity at another deployment is the access key the
operator configured for that region (--replication-site REGION=URL,
--replication-site-credentials REGION=KEY:SECRET; see core/remote_sites.py): an upstream URL
`<account>.dkr.ecr.<region>.amazonaws.com` whose region is such a site is reached at the site's
URL, signed in to with GetAuthorizationToken under that key (or under the temporary credentials
of customRoleArn, assumed through the site's STS), and addressed by its ECR host name so the site
serves the upstream account's registry. An ECR upstream in no configured region is reached as
any other registry, at its own host name, with no identity to sign in with."""

from __future__ import annotations

import dataclasses
import re
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.config import Settings
from dockyard.core.registry.upstream_client import UpstreamClient, UpstreamError
from dockyard.core.remote_sites import Site, configured_site, ecr_call, registry_host, token_password

if TYPE_CHECKING:
    import httpx

_ECR_HOST = re.compile(r"^(?:https://)?([0-9]{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/?$")
STS_VERSION = "2011-06-15"
ROLE_SESSION_NAME = "dockyard-pull-through-cache"
# Seconds: for each request made to sign in.
TIMEOUT = 30.0
# A password is used until shortly before the token expires, and at most this long: a site whose
# keys changed is signed in to again within minutes.
PASSWORD_REUSE_SECONDS = 900.0
# (site URL, access key id, role) -> (password, when to stop using it, monotonic seconds)
_passwords: dict[tuple[str, str, str | None], tuple[str, float]] = {}


@dataclass(frozen=True)
class SiteUpstream:
    """An ECR upstream that a configured site serves: where it is reached, and as which host."""

    site: Site
    host: str
    role_arn: str | None


def site_upstream(settings: Settings, upstream_url: str, role_arn: str | None) -> SiteUpstream | None:
    """The configured site serving an ECR upstream URL; None when its region has none (or the
    URL is no ECR host name). SiteCredentialsMissing when the site has no access key."""
    match = _ECR_HOST.match(upstream_url.lower())
    if match is None:
        return None
    account_id, region = match[1], match[2]
    site = configured_site(settings, region)
    if site is None:
        return None
    return SiteUpstream(site, registry_host(account_id, region), role_arn)


def _refused(response: httpx.Response, what: str) -> UpstreamError:
    reason = "unauthorized" if response.status_code in (400, 401, 403) else "unavailable"
    return UpstreamError(reason, f"the upstream registry's {what} answered {response.status_code}")


async def _assumed(client: httpx.AsyncClient, upstream: SiteUpstream) -> Site:
    """The site's key traded for the temporary credentials of the rule's customRoleArn."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    site = upstream.site
    form = {
        "Action": "AssumeRole",
        "Version": STS_VERSION,
        "RoleArn": upstream.role_arn or "",
        "RoleSessionName": ROLE_SESSION_NAME,
    }
    request = AWSRequest("POST", site.url + "/", data=form)
    request.headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    SigV4Auth(Credentials(site.access_key_id, site.secret_access_key), "sts", site.region).add_auth(request)
    response = await client.post(site.url + "/", content=request.body, headers=dict(request.headers.items()))
    if response.status_code != 200:
        raise _refused(response, "AssumeRole")
    # The site is one the operator configured: its answer is trusted as much as its registry.
    tree = ElementTree.fromstring(response.content)
    found = {element.tag.rpartition("}")[2]: element.text for element in tree.iter()}
    try:
        return dataclasses.replace(
            site,
            access_key_id=str(found["AccessKeyId"]),
            secret_access_key=str(found["SecretAccessKey"]),
            session_token=str(found["SessionToken"]),
        )
    except KeyError as exc:
        raise UpstreamError("unavailable", "the upstream's AssumeRole answered no credentials") from exc


async def _sign_in(upstream: SiteUpstream) -> tuple[str, float]:
    import httpx

    async with httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT)) as client:
        try:
            site = await _assumed(client, upstream) if upstream.role_arn else upstream.site
            response = await ecr_call(client, site, "GetAuthorizationToken", {})
        except httpx.HTTPError as exc:
            raise UpstreamError("unavailable", f"the upstream registry cannot be reached: {exc!r}") from exc
    if response.status_code != 200:
        raise _refused(response, "GetAuthorizationToken")
    try:
        return token_password(response)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise UpstreamError("unavailable", "the upstream's GetAuthorizationToken answered no token") from exc


async def password(upstream: SiteUpstream) -> str:
    """The registry password GetAuthorizationToken gives at the site, reused while it is good."""
    key = (upstream.site.url, upstream.site.access_key_id, upstream.role_arn)
    held = _passwords.get(key)
    if held is not None and held[1] > time.monotonic():
        return held[0]
    secret, expires_at = await _sign_in(upstream)
    lifetime = min(PASSWORD_REUSE_SECONDS, expires_at - time.time() - 60) if expires_at else PASSWORD_REUSE_SECONDS
    _passwords[key] = (secret, time.monotonic() + max(lifetime, 0.0))
    return secret


async def client(upstream: SiteUpstream) -> UpstreamClient:
    """A client of the upstream registry at the site, signed in."""
    return UpstreamClient(upstream.site.url, ("AWS", await password(upstream)), host=upstream.host, basic=True)
