"""Pull through cache rules: which repositories of a registry cache which upstream registry.

A rule's ECR repository prefix always ends in an implied "/": the prefix `docker-hub` covers
`docker-hub/library/alpine` but not `docker-hubx/alpine`. The prefix `ROOT` covers every
repository that no other rule covers, so the most specific (longest) prefix a name starts with
wins. A cached repository maps to its upstream repository by trading the ECR prefix for the
rule's upstream repository prefix (none when that is ROOT), and nothing else: as in ECR, a
Docker Hub official image is pulled as `<prefix>/library/<name>`; `<prefix>/<name>` asks the
upstream for `<name>` itself."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import (
    DockyardError,
    InvalidParameterException,
    LimitExceededException,
    PullThroughCacheRuleAlreadyExistsException,
    PullThroughCacheRuleNotFoundException,
    UnsupportedUpstreamRegistryException,
)
from dockyard.core.identity.access import authorize
from dockyard.core.identity.caller import Caller
from dockyard.core.operations.account_settings import governed_registry
from dockyard.core.paging import decode_token, encode_token, page_size
from dockyard.core.registry import pull_through_ecr
from dockyard.core.registry.upstream_client import UpstreamError
from dockyard.core.remote_sites import SiteCredentialsMissing, basic_authorization
from dockyard.core.secrets.values import upstream_credentials
from dockyard.core.services import Services, now
from dockyard.store import schema

rules = schema.pull_through_cache_rules
ROOT = "ROOT"


@dataclass(frozen=True)
class CacheRule:
    id: int
    account_id: str
    region: str
    ecr_repository_prefix: str  # "ROOT" for ROOT
    upstream_registry_url: str
    upstream_registry: str
    upstream_repository_prefix: str | None  # None for ROOT (no upstream prefix)
    credential_arn: str | None
    custom_role_arn: str | None
    created_at: float
    updated_at: float


def _rule(row: Row) -> CacheRule:
    return CacheRule(
        id=row.id,
        account_id=row.account_id,
        region=row.region,
        ecr_repository_prefix=row.ecr_repository_prefix,
        upstream_registry_url=row.upstream_registry_url,
        upstream_registry=row.upstream_registry,
        upstream_repository_prefix=row.upstream_repository_prefix,
        credential_arn=row.credential_arn,
        custom_role_arn=row.custom_role_arn,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def covers(prefix: str, repository_name: str) -> bool:
    """Whether a rule with ECR repository prefix `prefix` covers `repository_name`."""
    return prefix == ROOT or repository_name.startswith(f"{prefix.rstrip('/')}/")


def most_specific(candidates: list[CacheRule], repository_name: str) -> CacheRule | None:
    """The rule that governs `repository_name` among a registry's rules: the longest prefix the
    name starts with, and ROOT only when no other rule covers it."""
    best: CacheRule | None = None
    for rule in candidates:
        if not covers(rule.ecr_repository_prefix, repository_name):
            continue
        if best is None or _specificity(rule) > _specificity(best):
            best = rule
    return best


def _specificity(rule: CacheRule) -> int:
    return -1 if rule.ecr_repository_prefix == ROOT else len(rule.ecr_repository_prefix.rstrip("/"))


async def rule_for_repository(
    conn: AsyncConnection, account_id: str, region: str, repository_name: str
) -> CacheRule | None:
    """The pull through cache rule that governs `repository_name` in a registry, if any."""
    # A name can start with only the prefixes made of its leading path segments, plus ROOT.
    segments = repository_name.split("/")
    possible = ["/".join(segments[:count]) for count in range(1, len(segments))]
    prefixes = [ROOT, *possible, *(f"{prefix}/" for prefix in possible)]
    query = select(rules).where(
        rules.c.account_id == account_id, rules.c.region == region, rules.c.ecr_repository_prefix.in_(prefixes)
    )
    candidates = [_rule(row) for row in (await conn.execute(query)).all()]
    return most_specific(candidates, repository_name)


def upstream_repository(rule: CacheRule, repository_name: str) -> str:
    """The upstream repository that the cached repository `repository_name` stands for."""
    if rule.ecr_repository_prefix == ROOT:
        rest = repository_name
    else:
        rest = repository_name[len(rule.ecr_repository_prefix.rstrip("/")) + 1 :]
    upstream_prefix = rule.upstream_repository_prefix
    if upstream_prefix is None or upstream_prefix == ROOT:
        return rest
    return f"{upstream_prefix.rstrip('/')}/{rest}"


def upstream_base_url(rule: CacheRule) -> str:
    """The upstream registry's base URL: `https://<upstreamRegistryUrl>` as ECR reaches it, or the
    URL as given when the operator wrote a scheme (a mirror or a test registry on plain HTTP)."""
    url = rule.upstream_registry_url.rstrip("/")
    return url if url.startswith(("http://", "https://")) else f"https://{url}"


# --- the ECR API ------------------------------------------------------------------------------

# AWS's quota: 50 pull through cache rules per registry.
MAX_RULES = 50
DEFAULT_PAGE = 100
# Upstreams ECR reaches only with a Secrets Manager secret (the user guide's table).
NEEDS_CREDENTIALS = frozenset(
    {"docker-hub", "github-container-registry", "azure-container-registry", "gitlab-container-registry"}
)
UPSTREAM_REGISTRIES = (
    "ecr",
    "ecr-public",
    "quay",
    "k8s",
    "docker-hub",
    "github-container-registry",
    "azure-container-registry",
    "gitlab-container-registry",
    "chainguard",
)
_ECR_HOST = re.compile(r"^[0-9]{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_WELL_KNOWN = {
    "public.ecr.aws": "ecr-public",
    "registry.k8s.io": "k8s",
    "quay.io": "quay",
    "registry-1.docker.io": "docker-hub",
    "ghcr.io": "github-container-registry",
    "registry.gitlab.com": "gitlab-container-registry",
    "cgr.dev": "chainguard",
}
_URL = re.compile(r"^(https?://)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?/?$")

UNSUPPORTED_UPSTREAM = "The specified upstream registry is not supported. Specify a supported upstream registry URL."
NEEDS_SECRET = (
    "The specified upstream registry requires authentication. Specify a valid Secrets Manager ARN and try again."
)
AUTHENTICATION_FAILED = (
    "The authentication to the upstream registry failed. Verify that the credentials provided in the pull "
    "through cache rule are correct, and try again."
)
UNREACHABLE = "Unable to reach the upstream registry. Verify that the upstream registry URL is correct, and try again."


def normal_prefix(prefix: str) -> str:
    """A prefix as stored: the implied trailing "/" dropped, so `team` and `team/` are one rule."""
    return prefix if prefix == ROOT else prefix.rstrip("/")


def infer_upstream_registry(url: str) -> str | None:
    """The upstream registry a URL names when the request leaves upstreamRegistry out."""
    host = url.removeprefix("https://").removeprefix("http://").rstrip("/").lower()
    if host in _WELL_KNOWN:
        return _WELL_KNOWN[host]
    if host.endswith(".azurecr.io"):
        return "azure-container-registry"
    if _ECR_HOST.match(host):
        return "ecr"
    return None


@dataclass(frozen=True)
class NewRule:
    ecr_repository_prefix: str
    upstream_registry_url: str
    upstream_registry: str | None = None
    credential_arn: str | None = None
    custom_role_arn: str | None = None
    upstream_repository_prefix: str | None = None


def describe(rule: CacheRule) -> dict[str, Any]:
    """A rule as the ECR API shows it (PullThroughCacheRule)."""
    shown: dict[str, Any] = {
        "ecrRepositoryPrefix": rule.ecr_repository_prefix,
        "upstreamRegistryUrl": rule.upstream_registry_url,
        "createdAt": rule.created_at,
        "registryId": rule.account_id,
        "credentialArn": rule.credential_arn,
        "customRoleArn": rule.custom_role_arn,
        "upstreamRegistry": rule.upstream_registry,
        "updatedAt": rule.updated_at,
    }
    if rule.upstream_repository_prefix is not None:
        shown["upstreamRepositoryPrefix"] = rule.upstream_repository_prefix
    elif rule.upstream_registry == "ecr":
        shown["upstreamRepositoryPrefix"] = ROOT
    return shown


def _scope(account_id: str, region: str) -> Any:
    return (rules.c.account_id == account_id) & (rules.c.region == region)


def _not_found(prefix: str, account_id: str) -> DockyardError:
    return PullThroughCacheRuleNotFoundException(
        f"The pull through cache rule with the prefix '{prefix}' does not exist in the registry with id '{account_id}'"
    )


def upstream_permitted(operator_hosts: Sequence[str], url: str) -> bool:
    """Whether the server may reach `url` for a rule: one of the public registries ECR supports
    (over https), or a host the operator listed (`--pull-through-upstream`, "host" or
    "host:port"). Tenants write rules, so anything else could aim the server at the operator's
    own network (a cloud metadata address, an internal service)."""
    scheme = "http" if url.lower().startswith("http://") else "https"
    host_port = url.split("://", 1)[-1].rstrip("/").lower()
    host = host_port.rsplit(":", 1)[0] if host_port.count(":") == 1 else host_port
    if host_port in operator_hosts or host in operator_hosts:
        return True
    return scheme == "https" and host_port == host and infer_upstream_registry(host) is not None


def _check_new_rule(new: NewRule, operator_hosts: Sequence[str]) -> str:
    """The rule's upstream registry, once the request is one ECR takes."""
    url = new.upstream_registry_url
    if not _URL.match(url):
        raise InvalidParameterException(
            "Invalid parameter at 'upstreamRegistryUrl' failed to satisfy constraint: 'must be a registry URL'"
        )
    upstream = new.upstream_registry or infer_upstream_registry(url)
    if upstream is None or not upstream_permitted(operator_hosts, url):
        raise UnsupportedUpstreamRegistryException(UNSUPPORTED_UPSTREAM)
    if upstream in NEEDS_CREDENTIALS and new.credential_arn is None:
        raise UnsupportedUpstreamRegistryException(NEEDS_SECRET)
    if upstream == "ecr" and new.credential_arn is not None:
        raise InvalidParameterException(
            "Invalid parameter at 'credentialArn' failed to satisfy constraint: "
            "'an ECR upstream registry authenticates with IAM, not a secret'"
        )
    if upstream != "ecr" and new.custom_role_arn is not None:
        raise InvalidParameterException(
            "Invalid parameter at 'customRoleArn' failed to satisfy constraint: "
            "'a custom role is used only with an ECR upstream registry'"
        )
    prefix = new.upstream_repository_prefix
    if prefix is not None and prefix != ROOT:
        if upstream != "ecr":
            raise InvalidParameterException(
                "Invalid parameter at 'upstreamRepositoryPrefix' failed to satisfy constraint: "
                "'an upstream repository prefix is used only with an ECR upstream registry'"
            )
        if new.ecr_repository_prefix == ROOT:
            raise InvalidParameterException(
                "Invalid parameter at 'upstreamRepositoryPrefix' failed to satisfy constraint: "
                "'an upstream repository prefix needs an ECR repository prefix other than ROOT'"
            )
    return upstream


async def create_rule(svc: Services, caller: Caller, registry_id: str, new: NewRule) -> dict[str, Any]:
    resource = await governed_registry(svc, caller, registry_id)
    await authorize(caller, "ecr:CreatePullThroughCacheRule", resource)
    upstream = _check_new_rule(new, svc.settings.pull_through_upstreams)
    if new.credential_arn is not None:
        await upstream_credentials(svc, registry_id, caller.region, new.credential_arn)
    prefix = normal_prefix(new.ecr_repository_prefix)
    upstream_prefix = new.upstream_repository_prefix
    stored_upstream_prefix = None if upstream_prefix in (None, ROOT) else normal_prefix(upstream_prefix or "")
    moment = now()
    async with svc.db.write() as conn:
        held = (
            (await conn.execute(select(rules.c.ecr_repository_prefix).where(_scope(registry_id, caller.region))))
            .scalars()
            .all()
        )
        if prefix in held:
            raise PullThroughCacheRuleAlreadyExistsException(
                f"A pull through cache rule with the prefix '{prefix}' already exists in the registry with id "
                f"'{registry_id}'"
            )
        if len(held) >= MAX_RULES:
            raise LimitExceededException(
                f"The maximum number of pull through cache rules ({MAX_RULES}) for the registry with id "
                f"'{registry_id}' has been reached"
            )
        await conn.execute(
            insert(rules).values(
                account_id=registry_id,
                region=caller.region,
                ecr_repository_prefix=prefix,
                upstream_registry_url=new.upstream_registry_url,
                upstream_registry=upstream,
                upstream_repository_prefix=stored_upstream_prefix,
                credential_arn=new.credential_arn,
                custom_role_arn=new.custom_role_arn,
                created_at=moment,
                updated_at=moment,
            )
        )
        rule = await _load(conn, registry_id, caller.region, prefix)
    shown = describe(rule)
    del shown["updatedAt"]
    return shown


async def _load(conn: AsyncConnection, account_id: str, region: str, prefix: str) -> CacheRule:
    row = (
        await conn.execute(
            select(rules).where(_scope(account_id, region), rules.c.ecr_repository_prefix == normal_prefix(prefix))
        )
    ).first()
    if row is None:
        raise _not_found(prefix, account_id)
    return _rule(row)


async def describe_rules(
    svc: Services,
    caller: Caller,
    registry_id: str,
    prefixes: list[str] | None,
    max_results: int | None,
    next_token: str | None,
) -> dict[str, Any]:
    resource = await governed_registry(svc, caller, registry_id)
    await authorize(caller, "ecr:DescribePullThroughCacheRules", resource)
    after = decode_token(next_token)
    size = page_size(max_results, DEFAULT_PAGE)
    query = select(rules).where(_scope(registry_id, caller.region)).order_by(rules.c.ecr_repository_prefix)
    wanted = [normal_prefix(prefix) for prefix in prefixes or []]
    if wanted:
        query = query.where(rules.c.ecr_repository_prefix.in_(wanted))
    if isinstance(after, str):
        query = query.where(rules.c.ecr_repository_prefix > after)
    async with svc.db.read() as conn:
        if wanted:
            # ECR refuses a filter naming a prefix that has no rule, whatever the page.
            existing = select(rules.c.ecr_repository_prefix).where(
                _scope(registry_id, caller.region), rules.c.ecr_repository_prefix.in_(wanted)
            )
            found = set((await conn.execute(existing)).scalars())
            missing = [prefix for prefix in wanted if prefix not in found]
            if missing:
                raise _not_found(missing[0], registry_id)
        page = [_rule(row) for row in (await conn.execute(query.limit(size + 1))).all()]
    answer: dict[str, Any] = {"pullThroughCacheRules": [describe(rule) for rule in page[:size]]}
    if len(page) > size:
        answer["nextToken"] = encode_token(page[size - 1].ecr_repository_prefix)
    return answer


async def update_rule(
    svc: Services,
    caller: Caller,
    registry_id: str,
    prefix: str,
    credential_arn: str | None,
    custom_role_arn: str | None,
) -> dict[str, Any]:
    resource = await governed_registry(svc, caller, registry_id)
    await authorize(caller, "ecr:UpdatePullThroughCacheRule", resource)
    async with svc.db.read() as conn:
        rule = await _load(conn, registry_id, caller.region, prefix)
    if credential_arn is None and custom_role_arn is None:
        raise InvalidParameterException(
            "Invalid parameter: at least one of credentialArn and customRoleArn must be specified"
        )
    check = NewRule(
        ecr_repository_prefix=rule.ecr_repository_prefix,
        upstream_registry_url=rule.upstream_registry_url,
        upstream_registry=rule.upstream_registry,
        credential_arn=credential_arn if credential_arn is not None else rule.credential_arn,
        custom_role_arn=custom_role_arn if custom_role_arn is not None else rule.custom_role_arn,
        upstream_repository_prefix=rule.upstream_repository_prefix,
    )
    _check_new_rule(check, svc.settings.pull_through_upstreams)
    if credential_arn is not None:
        await upstream_credentials(svc, registry_id, caller.region, credential_arn)
    moment = now()
    async with svc.db.write() as conn:
        changed = await conn.execute(
            update(rules)
            .where(rules.c.id == rule.id)
            .values(credential_arn=check.credential_arn, custom_role_arn=check.custom_role_arn, updated_at=moment)
        )
        if changed.rowcount == 0:
            raise _not_found(prefix, registry_id)
        updated = await _load(conn, registry_id, caller.region, prefix)
    shown = describe(updated)
    return {
        key: shown.get(key)
        for key in (
            "ecrRepositoryPrefix",
            "registryId",
            "updatedAt",
            "credentialArn",
            "customRoleArn",
            "upstreamRepositoryPrefix",
        )
    }


async def delete_rule(svc: Services, caller: Caller, registry_id: str, prefix: str) -> dict[str, Any]:
    resource = await governed_registry(svc, caller, registry_id)
    await authorize(caller, "ecr:DeletePullThroughCacheRule", resource)
    async with svc.db.write() as conn:
        rule = await _load(conn, registry_id, caller.region, prefix)
        await conn.execute(delete(rules).where(rules.c.id == rule.id))
    shown = describe(rule)
    del shown["updatedAt"], shown["upstreamRegistry"]
    return shown


async def validate_rule(svc: Services, caller: Caller, registry_id: str, prefix: str) -> dict[str, Any]:
    """Read the rule's secret and authenticate to the upstream registry with it, as ECR does;
    the outcome is reported (isValid, failure), not raised."""
    resource = await governed_registry(svc, caller, registry_id)
    await authorize(caller, "ecr:ValidatePullThroughCacheRule", resource)
    async with svc.db.read() as conn:
        rule = await _load(conn, registry_id, caller.region, prefix)
    failure = await _validation_failure(svc, rule)
    shown = describe(rule)
    answer = {
        key: shown.get(key)
        for key in (
            "ecrRepositoryPrefix",
            "registryId",
            "upstreamRegistryUrl",
            "credentialArn",
            "customRoleArn",
            "upstreamRepositoryPrefix",
        )
    }
    answer["isValid"] = failure is None
    if failure is not None:
        answer["failure"] = failure
    return answer


async def _validation_failure(svc: Services, rule: CacheRule) -> str | None:
    if not upstream_permitted(svc.settings.pull_through_upstreams, rule.upstream_registry_url):
        # A host the operator has since taken off the list.
        return UNSUPPORTED_UPSTREAM
    if rule.upstream_registry == "ecr":
        return await _ecr_validation_failure(svc, rule)
    credentials: tuple[str, str] | None = None
    if rule.credential_arn is not None:
        try:
            credentials = await upstream_credentials(svc, rule.account_id, rule.region, rule.credential_arn)
        except DockyardError as exc:
            return exc.message
    # httpx is imported with the first probe, not at start-up (issue 19: memory at rest).
    import httpx

    try:
        return await probe_upstream(upstream_base_url(rule), credentials)
    except httpx.HTTPError:
        return UNREACHABLE


async def _ecr_validation_failure(svc: Services, rule: CacheRule) -> str | None:
    """Sign in to an ECR upstream as its pulls will: at the configured site serving its region,
    with the site's key (or the rule's role assumed there). An ECR upstream elsewhere takes an
    IAM identity this deployment does not have there: reaching it, it cannot sign in."""
    import httpx

    try:
        upstream = pull_through_ecr.site_upstream(svc.settings, rule.upstream_registry_url, rule.custom_role_arn)
    except SiteCredentialsMissing:
        return AUTHENTICATION_FAILED
    if upstream is None:
        try:
            failure = await probe_upstream(upstream_base_url(rule), None)
        except httpx.HTTPError:
            return UNREACHABLE
        # It asks for credentials, and no secret may stand in for an IAM identity.
        return AUTHENTICATION_FAILED if failure == NEEDS_SECRET else failure
    try:
        password = await pull_through_ecr.password(upstream)
    except UpstreamError as exc:
        return AUTHENTICATION_FAILED if exc.reason == "unauthorized" else UNREACHABLE
    headers = {"Host": upstream.host, "Authorization": basic_authorization(password)}
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(PROBE_TIMEOUT)) as client:
            answer = await client.get(f"{upstream.site.url}/v2/", headers=headers)
    except httpx.HTTPError:
        return UNREACHABLE
    if answer.status_code == 200:
        return None
    return AUTHENTICATION_FAILED if answer.status_code in (401, 403) else UNREACHABLE


# Seconds, for each request of a probe.
PROBE_TIMEOUT = 30.0


async def probe_upstream(base_url: str, credentials: tuple[str, str] | None) -> str | None:
    """Authenticate to the upstream's /v2/ as a registry client does: anonymously, then by the
    challenge it answers (a Bearer token from its realm, or Basic). None when it lets us in,
    else why not."""
    import httpx

    auth = httpx.BasicAuth(*credentials) if credentials is not None else None
    async with httpx.AsyncClient(timeout=httpx.Timeout(PROBE_TIMEOUT), follow_redirects=True) as client:
        first = await client.get(f"{base_url}/v2/")
        if first.status_code == 200:
            return None
        if first.status_code != 401:
            return UNREACHABLE
        challenge = first.headers.get("www-authenticate", "")
        scheme, _, rest = challenge.partition(" ")
        if credentials is None:
            return NEEDS_SECRET
        if scheme.lower() == "basic":
            retry = await client.get(f"{base_url}/v2/", auth=auth)
            return None if retry.status_code == 200 else AUTHENTICATION_FAILED
        if scheme.lower() != "bearer":
            return AUTHENTICATION_FAILED
        params = _challenge_params(rest)
        realm = params.pop("realm", None)
        if realm is None:
            return AUTHENTICATION_FAILED
        granted = await client.get(realm, params=params, auth=auth)
        if granted.status_code != 200:
            return AUTHENTICATION_FAILED
        try:
            body = granted.json()
        except ValueError:
            return AUTHENTICATION_FAILED
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str):
            return AUTHENTICATION_FAILED
        retry = await client.get(f"{base_url}/v2/", headers={"Authorization": f"Bearer {token}"})
        return None if retry.status_code == 200 else AUTHENTICATION_FAILED


_PARAM = re.compile(r'([A-Za-z_]+)="([^"]*)"')


def _challenge_params(text: str) -> dict[str, str]:
    return {name.lower(): value for name, value in _PARAM.findall(text)}
