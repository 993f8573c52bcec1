"""A replication configuration's rules: their checks, and which destinations cover a repository.
Kept apart from the API (configuration.py) so that the push path imports only this."""

from __future__ import annotations

from typing import Any

from dockyard.core.errors import InvalidParameterException
from dockyard.core.identity.caller import Caller

IN_PROGRESS = "IN_PROGRESS"
COMPLETE = "COMPLETE"
FAILED = "FAILED"
PREFIX_MATCH = "PREFIX_MATCH"
# ECR's service quotas for a replication configuration.
MAX_RULES = 10
MAX_DESTINATIONS = 25
MAX_FILTERS = 100


def _invalid(message: str) -> InvalidParameterException:
    return InvalidParameterException(
        f"Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: '{message}'"
    )


def normalise_rules(configuration: dict[str, Any]) -> list[dict[str, Any]]:
    """The rules as stored and returned: only the members the API defines, in the order given."""
    rules = []
    for rule in configuration.get("rules") or []:
        kept: dict[str, Any] = {
            "destinations": [{"region": d["region"], "registryId": d["registryId"]} for d in rule["destinations"]]
        }
        filters = rule.get("repositoryFilters")
        if filters:
            kept["repositoryFilters"] = [{"filter": f["filter"], "filterType": f["filterType"]} for f in filters]
        rules.append(kept)
    return rules


def check_rules(caller: Caller, rules: list[dict[str, Any]]) -> None:
    """ECR's checks of a configuration beyond its shape: the quotas, PREFIX_MATCH filters, at
    least one destination per rule, and no destination that is the source registry itself."""
    if len(rules) > MAX_RULES:
        raise _invalid(f"Replication configuration can contain at most {MAX_RULES} rules")
    unique: set[tuple[str, str]] = set()
    filter_count = 0
    for rule in rules:
        if not rule["destinations"]:
            raise _invalid("Replication rule must contain at least one destination")
        for destination in rule["destinations"]:
            if destination["region"] == caller.region and destination["registryId"] == caller.account_id:
                raise _invalid(
                    "Replication destination cannot be the same as the source registry "
                    f"(registryId '{caller.account_id}', region '{caller.region}')"
                )
            unique.add((destination["region"], destination["registryId"]))
        for repository_filter in rule.get("repositoryFilters") or []:
            filter_count += 1
            if repository_filter["filterType"] != PREFIX_MATCH:
                raise _invalid(f"Repository filter type must be {PREFIX_MATCH}")
    if len(unique) > MAX_DESTINATIONS:
        raise _invalid(f"Replication configuration can contain at most {MAX_DESTINATIONS} unique destinations")
    if filter_count > MAX_FILTERS:
        raise _invalid(f"Replication configuration can contain at most {MAX_FILTERS} repository filters")


def rule_matches(rule: dict[str, Any], repository: str) -> bool:
    """A rule without repository filters covers every repository; with them, any filter the
    repository's name starts with (PREFIX_MATCH)."""
    filters = rule.get("repositoryFilters")
    if not filters:
        return True
    return any(repository.startswith(f["filter"]) for f in filters)


def destinations_for(rules: list[dict[str, Any]], repository: str) -> list[tuple[str, str]]:
    """(region, registry id) of each destination the rules covering `repository` name, each once."""
    found: list[tuple[str, str]] = []
    for rule in rules:
        if not rule_matches(rule, repository):
            continue
        for destination in rule["destinations"]:
            key = (destination["region"], destination["registryId"])
            if key not in found:
                found.append(key)
    return found
