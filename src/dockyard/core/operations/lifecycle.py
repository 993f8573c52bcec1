"""Lifecycle policies: ECR's rule language, validated as ECR validates it, and applied as ECR applies it.

A policy is {"rules": [...]}; each rule has a rulePriority, an optional description, a selection
(tagStatus tagged/untagged/any, tagPrefixList or tagPatternList for tagged images, storageClass
standard or archive, countType imageCountMoreThan, or sinceImagePushed, sinceImagePulled or
sinceImageTransitioned with countUnit days, countNumber) and an action: expire, or transition
with targetStorageClass archive (the archive storage class, core/registry/archive.py).

Storage classes, as ECR's lifecycle documentation has them: a rule selects images of its
storageClass only (standard when omitted: ACTIVE images; archive: ARCHIVED ones); counting by
imageCountMoreThan, sinceImagePushed or sinceImagePulled selects standard images, and
sinceImageTransitioned (days since the image was archived) archive ones, and requires the
storageClass; a transition moves standard images to archive; archived images are kept at least
90 days, so an expiry of archived images counts at least 90 days. sinceImagePulled counts from
the last recorded pull, or the push for an image never pulled.

ECR checks a policy against a JSON schema first, reporting the schema validator's wording ("object
has missing required properties ([\"countNumber\"])", "instance failed to match exactly one schema
(matched 0 out of 2)" for a countType/countUnit that fit neither form), then its own rules ("Only
one rule can select Untagged images."), each as InvalidParameterException "Invalid parameter at
'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: ...'".

Evaluation follows "How lifecycle policies work": rules run from the lowest rulePriority; an image
that a rule's selection matches can no longer be expired by a later rule, though later rules still
count it; imageCountMoreThan keeps the newest countNumber images (by push time) and expires the
rest, sinceImagePushed expires images pushed more than countNumber days ago. An image a surviving
image index refers to is never expired (the index would break); it becomes eligible once the
index itself is gone.

Evaluating a repository reads all its images, so it runs in a read transaction and never holds
the writer: a preview then stores its result, and a run expires what the evaluation found, in
short write transactions of at most BATCH images that re-check each image by indexed lookups
(see expire)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core import client_json as wire_json
from dockyard.core.errors import (
    InvalidParameterException,
    LifecyclePolicyNotFoundException,
    LifecyclePolicyPreviewNotFoundException,
)
from dockyard.core.identity.caller import Caller
from dockyard.core.paging import decode_token, encode_token
from dockyard.core.registry import archive, repositories
from dockyard.core.registry.images import delete_image
from dockyard.core.registry.repositories import Repository, open_repository
from dockyard.core.services import Services, now
from dockyard.store import inline_sqlite, schema

DAY = 86400.0
# Images a write transaction expires at most.
BATCH = 500
# How far apart the nodes' clocks may be: an image an evaluation could not see has pushed_at
# later than the evaluation's start less this (as in core.gc).
CLOCK_SKEW = 600.0
MAX_WILDCARDS = 4
TAG_STATUSES = ("tagged", "untagged", "any")
_PREFIX = (
    "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: "
)
_COMPACT = (",", ":")
repos = schema.repositories
state = schema.repository_lifecycle
images = schema.images
tags = schema.tags


def invalid(detail: str) -> InvalidParameterException:
    return InvalidParameterException(f"{_PREFIX}{detail}'")


def policy_not_found(repo: Repository) -> LifecyclePolicyNotFoundException:
    return LifecyclePolicyNotFoundException(
        f"Lifecycle policy does not exist for the repository with name '{repo.name}' "
        f"in the registry with id '{repo.account_id}'"
    )


def preview_not_found(repo: Repository) -> LifecyclePolicyPreviewNotFoundException:
    return LifecyclePolicyPreviewNotFoundException(
        f"Lifecycle policy preview does not exist for the repository with name '{repo.name}' "
        f"in the registry with id '{repo.account_id}'"
    )


# --- the language -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    priority: int
    description: str
    tag_status: str
    prefixes: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    count_type: str
    count_number: int
    document: dict[str, Any]
    action: str = "expire"
    storage_class: str = "standard"

    def selects(self, image_tags: tuple[str, ...]) -> bool:
        """Whether the rule's tag selection matches an image with these tags. With several prefixes
        or patterns, each must match one of the image's tags."""
        if self.tag_status == "any":
            return True
        if self.tag_status == "untagged":
            return not image_tags
        if not image_tags:
            return False
        if self.prefixes:
            return all(any(t.startswith(p) for t in image_tags) for p in self.prefixes)
        return all(any(p.fullmatch(t) for t in image_tags) for p in self.patterns)


@dataclass(frozen=True)
class LifecyclePolicy:
    text: str
    rules: tuple[Rule, ...]  # by rulePriority, lowest first


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _expect_type(value: Any, expected: str) -> None:
    if _type_name(value) != expected:
        raise invalid(
            f'instance type ({_type_name(value)}) does not match any allowed primitive type (allowed: ["{expected}"])'
        )


def _check_object(value: Any, required: tuple[str, ...], allowed: frozenset[str]) -> dict[str, Any]:
    _expect_type(value, "object")
    missing = sorted(k for k in required if k not in value)
    if missing:
        raise invalid(f"object has missing required properties ({json.dumps(missing, separators=_COMPACT)})")
    extra = sorted(k for k in value if k not in allowed)
    if extra:
        raise invalid(
            f"object instance has properties which are not allowed by the schema: "
            f"{json.dumps(extra, separators=_COMPACT)}"
        )
    return dict(value)


def _check_enum(value: Any, choices: tuple[str, ...]) -> str:
    _expect_type(value, "string")
    if value not in choices:
        raise invalid(
            f"instance value ({json.dumps(value)}) not found in enum "
            f"(possible values: {json.dumps(list(choices), separators=_COMPACT)})"
        )
    return str(value)


def _check_minimum(value: Any, minimum: int) -> int:
    _expect_type(value, "integer")
    if value < minimum:
        raise invalid(f"numeric instance is lower than the required minimum (minimum: {minimum}, found: {value})")
    return int(value)


def _check_strings(value: Any) -> tuple[str, ...]:
    _expect_type(value, "array")
    if not value:
        raise invalid("array is too short: must have at least 1 elements but instance has 0 elements")
    for item in value:
        _expect_type(item, "string")
    if len(set(value)) != len(value):
        raise invalid("array must not contain duplicate elements")
    return tuple(value)


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


_RULE_KEYS = frozenset({"rulePriority", "description", "selection", "action"})
_SELECTION_KEYS = frozenset(
    {"tagStatus", "tagPrefixList", "tagPatternList", "storageClass", "countType", "countUnit", "countNumber"}
)
_AGE_COUNTS = ("sinceImagePushed", "sinceImagePulled", "sinceImageTransitioned")
# ECR's minimum storage duration of archived images.
ARCHIVE_MINIMUM_DAYS = 90


def _parse_rule(document: Any) -> Rule:
    rule = _check_object(document, ("action", "rulePriority", "selection"), _RULE_KEYS)
    priority = _check_minimum(rule["rulePriority"], 1)
    description = rule.get("description", "")
    _expect_type(description, "string")
    action = _check_object(rule["action"], ("type",), frozenset({"type", "targetStorageClass"}))
    action_type = _check_enum(action["type"], ("expire", "transition"))
    if action_type == "transition":
        if "targetStorageClass" not in action:
            raise invalid("targetStorageClass is required when action type=TRANSITION.")
        _check_enum(action["targetStorageClass"], ("archive",))
    elif "targetStorageClass" in action:
        raise invalid("targetStorageClass can only be used when action type=TRANSITION.")
    selection = _check_object(rule["selection"], ("countNumber", "countType", "tagStatus"), _SELECTION_KEYS)
    tag_status = _check_enum(selection["tagStatus"], TAG_STATUSES)
    prefixes = _check_strings(selection["tagPrefixList"]) if "tagPrefixList" in selection else ()
    patterns = _check_strings(selection["tagPatternList"]) if "tagPatternList" in selection else ()
    # The schema's two forms of a selection: a count without a unit, or an age in days.
    count_type, unit = selection["countType"], selection.get("countUnit", None)
    count_form = count_type == "imageCountMoreThan" and "countUnit" not in selection
    age_form = count_type in _AGE_COUNTS and unit == "days"
    if not (count_form or age_form):
        raise invalid("instance failed to match exactly one schema (matched 0 out of 2)")
    count_number = _check_minimum(selection["countNumber"], 1)
    storage_class = _check_storage_class(selection, count_type, action_type, count_number)
    if tag_status == "tagged" and not (prefixes or patterns):
        raise invalid("Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.")
    if tag_status != "tagged" and (prefixes or patterns):
        raise invalid(
            f"tagPrefixList and tagPatternList can only be used when tagStatus=TAGGED, not {tag_status.upper()}."
        )
    if prefixes and patterns:
        raise invalid("A rule can specify either tagPrefixList or tagPatternList, not both.")
    for pattern in patterns:
        if pattern.count("*") > MAX_WILDCARDS:
            raise invalid(f"A tagPatternList pattern can have at most {MAX_WILDCARDS} wildcards (*): {pattern}")
    return Rule(
        priority=priority,
        description=description,
        tag_status=tag_status,
        prefixes=prefixes,
        patterns=tuple(_wildcard(p) for p in patterns),
        count_type=count_type,
        count_number=count_number,
        document=rule,
        action=action_type,
        storage_class=storage_class,
    )


def _check_storage_class(selection: dict[str, Any], count_type: str, action_type: str, count_number: int) -> str:
    """The storage class a rule selects, once it fits its count type and action."""
    if "storageClass" in selection:
        storage_class = _check_enum(selection["storageClass"], ("standard", "archive"))
    elif count_type == "sinceImageTransitioned":
        raise invalid("storageClass is required when countType=sinceImageTransitioned.")
    else:
        storage_class = "standard"
    if count_type == "sinceImageTransitioned" and storage_class != "archive":
        raise invalid("countType=sinceImageTransitioned can only be used with storageClass=archive.")
    if count_type != "sinceImageTransitioned" and storage_class != "standard":
        raise invalid(f"countType={count_type} can only be used with storageClass=standard.")
    if action_type == "transition" and storage_class != "standard":
        raise invalid("Only images in storageClass=standard can be transitioned to archive.")
    if storage_class == "archive" and count_number < ARCHIVE_MINIMUM_DAYS:
        raise invalid(
            f"Archived images have a minimum storage duration of {ARCHIVE_MINIMUM_DAYS} days: "
            f"countNumber must be at least {ARCHIVE_MINIMUM_DAYS} for storageClass=archive."
        )
    return storage_class


def parse_policy(text: str) -> LifecyclePolicy:
    """The policy in `text`, or InvalidParameterException with ECR's reason."""
    try:
        document = wire_json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise invalid("Could not map policyString into LifecyclePolicy.")
    policy = _check_object(document, ("rules",), frozenset({"rules"}))
    _expect_type(policy["rules"], "array")
    if not policy["rules"]:
        raise invalid("array is too short: must have at least 1 elements but instance has 0 elements")
    rules = sorted((_parse_rule(r) for r in policy["rules"]), key=lambda r: r.priority)
    _check_rule_set(rules)
    return LifecyclePolicy(text, tuple(rules))


def _check_rule_set(rules: list[Rule]) -> None:
    priorities = [r.priority for r in rules]
    if len(set(priorities)) != len(priorities):
        raise invalid("Rule priorities must be unique.")
    # The rules on one storage class's images follow ECR's rules among themselves: a rule on
    # standard images and one on archived images never select the same image.
    for storage_class in ("standard", "archive"):
        _check_class_rules([r for r in rules if r.storage_class == storage_class])


def _check_class_rules(rules: list[Rule]) -> None:
    if sum(1 for r in rules if r.tag_status == "untagged") > 1:
        raise invalid("Only one rule can select Untagged images.")
    if any(r.tag_status == "any" for r in rules[:-1]):
        raise invalid("Rule for tagStatus=ANY must have the lowest priority.")
    selections = [(r.prefixes, tuple(p.pattern for p in r.patterns)) for r in rules if r.tag_status == "tagged"]
    if len(set(selections)) != len(selections):
        raise invalid("The set of rules must contain a unique set of tag prefixes.")


# --- evaluation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    image_id: int
    digest: str
    tags: tuple[str, ...]
    pushed_at: float
    status: str = "ACTIVE"
    last_pull_at: float | None = None
    archived_at: float | None = None

    def in_class(self, storage_class: str) -> bool:
        return self.status == ("ARCHIVED" if storage_class == "archive" else "ACTIVE")

    def counted_from(self, count_type: str) -> float:
        """The moment an age rule counts this image's age from."""
        if count_type == "sinceImagePulled":
            return self.last_pull_at if self.last_pull_at is not None else self.pushed_at
        if count_type == "sinceImageTransitioned":
            return self.archived_at if self.archived_at is not None else self.pushed_at
        return self.pushed_at


@dataclass(frozen=True)
class Expiry:
    """What a rule does to an image: expires it, or (rule.action "transition") archives it."""

    image: Candidate
    rule: Rule

    @property
    def transition(self) -> bool:
        return self.rule.action == "transition"


def evaluate(
    policy: LifecyclePolicy, candidates: list[Candidate], at: float, parents: dict[str, set[str]] | None = None
) -> list[Expiry]:
    """The images `policy` expires at time `at`, oldest first. `parents` maps a digest to the
    digests of the image indexes (in the same repository) that refer to it."""
    expired: dict[int, Expiry] = {}
    claimed: set[int] = set()
    for rule in policy.rules:
        selected = [c for c in candidates if c.in_class(rule.storage_class) and rule.selects(c.tags)]
        if rule.count_type == "imageCountMoreThan":
            newest_first = sorted(selected, key=lambda c: (c.pushed_at, c.image_id), reverse=True)
            due = newest_first[rule.count_number :]
        else:
            cutoff = at - rule.count_number * DAY
            due = [c for c in selected if c.counted_from(rule.count_type) < cutoff]
        for candidate in due:
            if candidate.image_id not in claimed and candidate.image_id not in expired:
                expired[candidate.image_id] = Expiry(candidate, rule)
        claimed.update(c.image_id for c in selected)
    gone = {e.image.digest for e in expired.values()}
    kept = [
        e for e in expired.values() if not (parents and any(p not in gone for p in parents.get(e.image.digest, ())))
    ]
    return sorted(kept, key=lambda e: (e.image.pushed_at, e.image.image_id))


async def candidates_of(conn: AsyncConnection, repository_id: int) -> tuple[list[Candidate], dict[str, set[str]]]:
    """The repository's images with their tags, and which index refers to which image."""
    rows = await conn.execute(
        select(
            images.c.id,
            images.c.digest,
            images.c.pushed_at,
            images.c.status,
            images.c.last_pull_at,
            images.c.archived_at,
            tags.c.name,
        )
        .select_from(images.outerjoin(tags, tags.c.image_id == images.c.id))
        .where(images.c.repository_id == repository_id)
        .order_by(images.c.id, tags.c.name)
    )
    found: dict[int, tuple[str, float, list[str], tuple[str, float | None, float | None]]] = {}
    for row in rows:
        entry = found.setdefault(
            row.id, (row.digest, row.pushed_at, [], (row.status, row.last_pull_at, row.archived_at))
        )
        if row.name is not None:
            entry[2].append(row.name)
    refs = schema.image_references
    parent_rows = await conn.execute(
        select(refs.c.digest, images.c.digest.label("parent"))
        .join(images, images.c.id == refs.c.image_id)
        .where(images.c.repository_id == repository_id, refs.c.kind == "manifest")
    )
    parents: dict[str, set[str]] = {}
    for row in parent_rows:
        parents.setdefault(row.digest, set()).add(row.parent)
    candidates = [Candidate(i, d, tuple(t), p, *more) for i, (d, p, t, more) in found.items()]
    return candidates, parents


def preview_result(expiry: Expiry) -> dict[str, Any]:
    """A LifecyclePolicyPreviewResult."""
    return {
        "imageTags": list(expiry.image.tags),
        "imageDigest": expiry.image.digest,
        "imagePushedAt": expiry.image.pushed_at,
        "action": {"type": "TRANSITION", "targetStorageClass": "ARCHIVE"} if expiry.transition else {"type": "EXPIRE"},
        "appliedRulePriority": expiry.rule.priority,
        "storageClass": "ARCHIVE" if expiry.image.status == "ARCHIVED" else "STANDARD",
    }


def preview_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """A LifecyclePolicyPreviewSummary: how many images expire, and how many move to each class."""
    moving = sum(1 for r in results if r["action"]["type"] == "TRANSITION")
    summary: dict[str, Any] = {"expiringImageTotalCount": len(results) - moving}
    if moving:
        summary["transitioningImageTotalCounts"] = [{"targetStorageClass": "ARCHIVE", "imageTotalCount": moving}]
    return summary


# --- the API operations -------------------------------------------------------------------------


async def _evaluated_at(conn: AsyncConnection, repository_id: int) -> float:
    value = (await conn.execute(select(state.c.evaluated_at).where(state.c.repository_id == repository_id))).scalar()
    return float(value or 0.0)


async def _stored_text(conn: AsyncConnection, repo: Repository) -> str | None:
    return (await conn.execute(select(repos.c.lifecycle_policy_text).where(repos.c.id == repo.id))).scalar()


async def _upsert_state(conn: AsyncConnection, repository_id: int, **values: Any) -> None:
    result = await conn.execute(update(state).where(state.c.repository_id == repository_id).values(**values))
    if result.rowcount == 0:
        await conn.execute(insert(state).values(repository_id=repository_id, **values))


async def put_lifecycle_policy(
    svc: Services, caller: Caller, account_id: str, repository: str, text: str
) -> dict[str, Any]:
    async with svc.db.write() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:PutLifecyclePolicy")
        parse_policy(text)
        await conn.execute(update(repos).where(repos.c.id == repo.id).values(lifecycle_policy_text=text))
    return {"registryId": repo.account_id, "repositoryName": repo.name, "lifecyclePolicyText": text}


async def get_lifecycle_policy(svc: Services, caller: Caller, account_id: str, repository: str) -> dict[str, Any]:
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:GetLifecyclePolicy")
        text = await _stored_text(conn, repo)
        if not text:
            raise policy_not_found(repo)
        evaluated = await _evaluated_at(conn, repo.id)
    return {
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "lifecyclePolicyText": text,
        "lastEvaluatedAt": evaluated,
    }


async def delete_lifecycle_policy(svc: Services, caller: Caller, account_id: str, repository: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:DeleteLifecyclePolicy")
        text = await _stored_text(conn, repo)
        if not text:
            raise policy_not_found(repo)
        evaluated = await _evaluated_at(conn, repo.id)
        await conn.execute(update(repos).where(repos.c.id == repo.id).values(lifecycle_policy_text=None))
    return {
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "lifecyclePolicyText": text,
        "lastEvaluatedAt": evaluated,
    }


async def start_lifecycle_policy_preview(
    svc: Services, caller: Caller, account_id: str, repository: str, text: str | None
) -> dict[str, Any]:
    """Evaluate `text` (or the stored policy) against the repository as it is now. The evaluation is
    quick enough to finish within the call; the answer says IN_PROGRESS, as ECR's does, and
    GetLifecyclePolicyPreview reports COMPLETE."""
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:StartLifecyclePolicyPreview")
        if not text:
            text = await _stored_text(conn, repo)
            if not text:
                raise policy_not_found(repo)
        policy = parse_policy(text)
        # Every image of the repository: read on a thread, not on the event loop.
        with inline_sqlite.offloaded():
            candidates, parents = await candidates_of(conn, repo.id)
    moment = now()
    results = [preview_result(e) for e in evaluate(policy, candidates, moment, parents)]
    async with svc.db.write() as conn:
        # Deleted while it was evaluated: its state row would name no repository.
        if not await _exists(conn, repo.id):
            raise repositories.not_found(repo.name, repo.account_id)
        await _upsert_state(
            conn,
            repo.id,
            preview_policy_text=text,
            preview_status="COMPLETE",
            preview_results=json.dumps(results),
            preview_started_at=moment,
        )
    return {
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "lifecyclePolicyText": text,
        "status": "IN_PROGRESS",
    }


async def get_lifecycle_policy_preview(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    *,
    image_ids: list[dict[str, str]] | None = None,
    tag_status: str | None = None,
    max_results: int | None = None,
    next_token: str | None = None,
) -> dict[str, Any]:
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:GetLifecyclePolicyPreview")
        row = (
            await conn.execute(
                select(state.c.preview_policy_text, state.c.preview_status, state.c.preview_results).where(
                    state.c.repository_id == repo.id
                )
            )
        ).first()
    if row is None or row.preview_status is None:
        raise preview_not_found(repo)
    results: list[dict[str, Any]] = json.loads(row.preview_results or "[]")
    selected = [r for r in results if _preview_matches(r, image_ids, tag_status)]
    start = decode_token(next_token) or 0
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise InvalidParameterException(
            "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'"
        )
    size = max_results or 100
    page = selected[start : start + size]
    answer: dict[str, Any] = {
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "lifecyclePolicyText": row.preview_policy_text,
        "status": row.preview_status,
        "previewResults": page,
        "summary": preview_summary(results),
    }
    if start + size < len(selected):
        answer["nextToken"] = encode_token(start + size)
    return answer


def _preview_matches(result: dict[str, Any], image_ids: list[dict[str, str]] | None, tag_status: str | None) -> bool:
    tagged = bool(result["imageTags"])
    if tag_status == "TAGGED" and not tagged or tag_status == "UNTAGGED" and tagged:
        return False
    if not image_ids:
        return True
    return any(
        (i.get("imageDigest") in (None, result["imageDigest"]))
        and (i.get("imageTag") is None or i["imageTag"] in result["imageTags"])
        for i in image_ids
    )


# --- applying policies (the background worker and `dockyard lifecycle run`) ----------------------


@dataclass(frozen=True)
class RepositoryRun:
    account_id: str
    region: str
    repository: str
    policy: LifecyclePolicy
    expired: list[Expiry]
    transitioned: list[Expiry] = field(default_factory=list)


async def policy_repositories(svc: Services) -> list[int]:
    async with svc.db.read() as conn:
        rows = await conn.execute(select(repos.c.id).where(repos.c.lifecycle_policy_text.is_not(None)))
        return [row.id for row in rows]


async def apply_to_repository(svc: Services, repository_id: int, *, dry_run: bool) -> RepositoryRun | None:
    """Apply the repository's policy now (or only say what it would expire). None when the
    repository or its policy is gone, or the stored policy no longer parses (it was valid when
    put; a newer rule set may refuse it). The run's `expired` are the images actually deleted."""
    began = now()
    async with svc.db.read() as conn:
        row = (
            await conn.execute(
                select(repos.c.account_id, repos.c.region, repos.c.name, repos.c.lifecycle_policy_text).where(
                    repos.c.id == repository_id
                )
            )
        ).first()
        if row is None or not row.lifecycle_policy_text:
            return None
        try:
            policy = parse_policy(row.lifecycle_policy_text)
        except InvalidParameterException:
            return None
        candidates, parents = await candidates_of(conn, repository_id)
    moment = now()
    evaluated = evaluate(policy, candidates, moment, parents)
    expired = [e for e in evaluated if not e.transition]
    transitioned = [e for e in evaluated if e.transition]
    if not dry_run:
        expired = await expire(svc, repository_id, policy, expired, parents, since=began - CLOCK_SKEW)
        transitioned = await transition(svc, repository_id, policy, transitioned)
        async with svc.db.write() as conn:
            if await _exists(conn, repository_id):
                await _upsert_state(conn, repository_id, evaluated_at=moment)
    return RepositoryRun(row.account_id, row.region, row.name, policy, expired, transitioned)


async def transition(svc: Services, repository_id: int, policy: LifecyclePolicy, moving: list[Expiry]) -> list[Expiry]:
    """Archive what an evaluation of `policy` transitioned, BATCH images a write transaction;
    each only if, when its transaction re-checks, the policy is still `policy` and the image is
    still ACTIVE with the tags it was evaluated with. The archive mover then moves its layers."""
    done: set[int] = set()
    for start in range(0, len(moving), BATCH):
        async with svc.db.write() as conn:
            if await _stored_policy_text(conn, repository_id) != policy.text:
                break
            chosen = [
                e.image.image_id
                for e in moving[start : start + BATCH]
                if await _unchanged(conn, repository_id, e, set()) and await _active(conn, e.image.image_id)
            ]
            await archive.archive_images(conn, chosen)
            done.update(chosen)
    return [e for e in moving if e.image.image_id in done]


async def _active(conn: AsyncConnection, image_id: int) -> bool:
    status = (await conn.execute(select(images.c.status).where(images.c.id == image_id))).scalar()
    return status == archive.ACTIVE


async def expire(
    svc: Services,
    repository_id: int,
    policy: LifecyclePolicy,
    expired: list[Expiry],
    parents: dict[str, set[str]],
    *,
    since: float,
) -> list[Expiry]:
    """Delete what an evaluation of `policy` expired, BATCH images a write transaction; returns
    the expiries carried out, in `expired`'s order. Each image is deleted only if, when its
    transaction re-checks: the repository's policy is still `policy`, the image is there with the
    tags it was evaluated with, no index it was evaluated with refers to it any more (indexes go
    before the images they list), and no image pushed since `since` (the evaluation's start less
    CLOCK_SKEW: any image the evaluation could not see) lists it, unless this run deleted that
    one. A check that fails spares the image until the next run."""
    done: set[int] = set()
    ordered = _indexes_first(expired, parents)
    for start in range(0, len(ordered), BATCH):
        async with svc.db.write() as conn:
            if await _stored_policy_text(conn, repository_id) != policy.text:
                break
            listed = await _listed_by_recent(conn, repository_id, since)
            for expiry in ordered[start : start + BATCH]:
                if listed.get(expiry.image.digest, set()) - done:
                    continue
                if await _unchanged(conn, repository_id, expiry, parents.get(expiry.image.digest, set())):
                    await delete_image(conn, expiry.image.image_id)
                    done.add(expiry.image.image_id)
    return [e for e in expired if e.image.image_id in done]


def _indexes_first(expired: list[Expiry], parents: dict[str, set[str]]) -> list[Expiry]:
    """`expired` with every index before the images it lists (an index may list indexes)."""
    by_digest = {e.image.digest: e for e in expired}
    depth: dict[str, int] = {}

    def depth_of(digest: str, seen: frozenset[str]) -> int:
        if digest not in depth:
            above = [p for p in parents.get(digest, ()) if p in by_digest and p not in seen]
            depth[digest] = 1 + max((depth_of(p, seen | {digest}) for p in above), default=-1)
        return depth[digest]

    return sorted(expired, key=lambda e: depth_of(e.image.digest, frozenset()))


async def _listed_by_recent(conn: AsyncConnection, repository_id: int, since: float) -> dict[str, set[int]]:
    """Which of the repository's images pushed since `since` list each digest (by the pushed
    index, then each image's references by primary key: no walk over every reference to a digest)."""
    refs = schema.image_references
    rows = await conn.execute(
        select(refs.c.digest, images.c.id)
        .select_from(images.join(refs, refs.c.image_id == images.c.id))
        .where(images.c.repository_id == repository_id, images.c.pushed_at >= since, refs.c.kind == "manifest")
    )
    listed: dict[str, set[int]] = {}
    for digest, image_id in rows:
        listed.setdefault(digest, set()).add(int(image_id))
    return listed


async def _unchanged(conn: AsyncConnection, repository_id: int, expiry: Expiry, parents: set[str]) -> bool:
    image = expiry.image
    found = (
        await conn.execute(
            select(images.c.digest).where(images.c.id == image.image_id, images.c.repository_id == repository_id)
        )
    ).scalar()
    if found != image.digest:
        return False
    now_tags = sorted((await conn.execute(select(tags.c.name).where(tags.c.image_id == image.image_id))).scalars())
    if now_tags != sorted(image.tags):
        return False
    if not parents:
        return True
    surviving = await conn.execute(
        select(images.c.id).where(images.c.repository_id == repository_id, images.c.digest.in_(parents)).limit(1)
    )
    return surviving.first() is None


async def _stored_policy_text(conn: AsyncConnection, repository_id: int) -> str | None:
    return (await conn.execute(select(repos.c.lifecycle_policy_text).where(repos.c.id == repository_id))).scalar()


async def _exists(conn: AsyncConnection, repository_id: int) -> bool:
    return (await conn.execute(select(repos.c.id).where(repos.c.id == repository_id))).first() is not None
