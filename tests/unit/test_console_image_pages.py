"""The console's image pages in process (issue 17, "Missing"): the images list (newest first,
sorted by any column, searched by tag, numbered pages with the total), one image's page (URI,
digest, layers, an index's platforms, scan, signatures and other referrers, status) and the
lifecycle tab (rules as a table, a rule form whose errors come from the core, preview)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from dockyard.core.operations import lifecycle
from dockyard.core.registry import images
from dockyard.core.services import Services
from dockyard.doors.console.lifecycle import RuleForm, plain_problem, problem_of
from dockyard.store import schema
from tests.support.console_app import ACCOUNT, Console, console_app, root
from tests.unit.test_console_pages import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, _upload, create_repository, digest_of

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
COSIGN = "application/vnd.dev.cosign.artifact.sig.v1+json"


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    for app in console_app(tmp_path):
        assert app.sign_in().status_code == 303
        yield app


def push(console: Console, name: str, count: int, *, tags: list[str] | None = None, layer_size: int = 64) -> list[str]:
    """`count` images, image n tagged tags[n] when given, each one layer bigger than the last."""

    async def go(svc: Services) -> list[str]:
        config = await _upload(svc, name, json.dumps({"architecture": "amd64", "os": "linux"}).encode())
        digests = []
        for n in range(count):
            layer = await _upload(svc, name, b"\x1f\x8b" + bytes([n % 256]) * (layer_size + n))
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, **config},
                "layers": [{"mediaType": OCI_LAYER, **layer}],
            }
            data = json.dumps(manifest).encode()
            tag = tags[n] if tags else None
            await images.put_manifest(svc, root(), ACCOUNT, name, data, OCI_MANIFEST, tag=tag)
            digests.append(digest_of(data))
        return digests

    return list(console.run(go))


def put_raw(console: Console, name: str, document: dict[str, Any], media_type: str, tag: str | None = None) -> str:
    data = json.dumps(document).encode()

    async def go(svc: Services) -> None:
        await images.put_manifest(svc, root(), ACCOUNT, name, data, media_type, tag=tag)

    console.run(go)
    return digest_of(data)


def listed(page: str) -> list[str]:
    return re.findall(r'name="digest" value="(sha256:[0-9a-f]{64})"', page)


# --- the images list ---------------------------------------------------------------------------


def test_images_list_is_newest_first_sorted_searched_and_counted(console: Console) -> None:
    create_repository(console, "shop")
    tags = [f"v1.{n}" if n % 3 else f"build-{n}" for n in range(120)]
    pushed = push(console, "shop", 120, tags=tags)
    base = "/console/repositories/shop/-/images"
    first = console.client.get(base)
    assert first.status_code == 200
    assert listed(first.text) == pushed[::-1][:50]  # newest first, 50 a page
    assert first.text.count("of <strong>120</strong> images") == 2  # a pager at the top and the bottom
    assert "Page 1 of 3" in first.text
    assert "Server-Timing" in first.headers and first.headers["Server-Timing"].startswith("app;dur=")
    last = console.client.get(base + "?page=3").text
    assert listed(last) == pushed[::-1][100:]
    assert "101–120 of <strong>120</strong>" in last

    oldest = console.client.get(base + "?order=asc").text
    assert listed(oldest) == pushed[:50]
    assert 'aria-sort="ascending"' in oldest
    by_size = console.client.get(base + "?sort=size").text  # biggest first: each image is a byte bigger
    assert listed(by_size) == pushed[::-1][:50]
    by_digest = listed(console.client.get(base + "?sort=digest").text)
    assert by_digest == sorted(pushed)[:50]

    found = console.client.get(base + "?q=BUILD-").text  # any case
    assert set(listed(found)) == {d for d, t in zip(pushed, tags, strict=True) if t.startswith("build-")}
    assert "of <strong>40</strong> images" in found
    nothing = console.client.get(base + "?q=%25").text  # a LIKE wildcard is a character like any other
    assert listed(nothing) == [] and "with a tag containing “%”" in nothing
    # Each digest shows short, with its whole value to copy and a link to the image's page.
    assert f'data-copy="{pushed[-1]}"' in first.text
    assert f"{pushed[-1][:19]}…" in first.text
    assert html.escape(f"/console/repositories/shop/-/image?digest={pushed[-1]}".replace(":", "%3A")) in first.text


def test_images_list_of_a_missing_repository_is_a_404(console: Console) -> None:
    page = console.client.get("/console/repositories/nothing/-/images?sort=size")
    assert page.status_code == 404 and "RepositoryNotFoundException" in page.text


# --- one image ----------------------------------------------------------------------------------


def test_image_page_shows_an_image_its_index_and_referrers(console: Console) -> None:
    create_repository(console, "app")
    amd64, arm64 = push(console, "app", 2)
    children = [
        {"mediaType": OCI_MANIFEST, "digest": amd64, "size": 300, "platform": {"os": "linux", "architecture": "amd64"}},
        {
            "mediaType": OCI_MANIFEST,
            "digest": arm64,
            "size": 300,
            "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
        },
    ]
    index = put_raw(
        console, "app", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}, OCI_INDEX, "v2"
    )

    async def sign(svc: Services) -> str:
        empty = await _upload(svc, "app", b"{}")
        signature = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": COSIGN,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", **empty},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", **empty}],
            "subject": {"mediaType": OCI_INDEX, "digest": index, "size": 10},
        }
        data = json.dumps(signature).encode()
        await images.put_manifest(svc, root(), ACCOUNT, "app", data, OCI_MANIFEST)
        return digest_of(data)

    signature = console.run(sign)
    page = console.client.get(f"/console/repositories/app/-/image?digest={index}")
    assert page.status_code == 200, page.text
    text = page.text
    assert "Image v2" in text and f'data-copy="{index}"' in text
    assert f"@{index}" in text  # the image URI, by digest
    assert "Platforms (2)" in text and "linux/amd64" in text and "linux/arm64/v8" in text
    assert f"image?digest={amd64.replace(':', '%3A')}" in text  # each child links to its own page
    assert "Signature (cosign)" in text and signature[:19] in text
    assert "ACTIVE" in text and OCI_INDEX in text

    child = console.client.get(f"/console/repositories/app/-/image?digest={amd64}").text
    assert "Layers (1)" in child and "Config" in child and OCI_LAYER in child
    assert "This image has not been scanned." in child
    assert "Nothing refers to this image" in child
    # Showing the manifest is no pull.
    assert ">Never<" in console.client.get(f"/console/repositories/app/-/image?digest={amd64}").text

    missing = console.client.get("/console/repositories/app/-/image?digest=sha256:" + "0" * 64)
    assert missing.status_code == 404 and "ImageNotFoundException" in missing.text


# --- lifecycle ----------------------------------------------------------------------------------


def form_data(**overrides: str) -> dict[str, str]:
    values = {
        "original": "",
        "priority": "1",
        "description": "",
        "tag_status": "untagged",
        "tag_match": "prefix",
        "tag_values": "",
        "count_type": "sinceImagePushed",
        "count_number": "14",
        "storage_class": "standard",
        "action": "expire",
        "intent": "save",
    }
    return values | overrides


def stored_rules(console: Console, name: str) -> list[dict[str, Any]]:
    async def get(svc: Services) -> list[dict[str, Any]]:
        found = await lifecycle.get_lifecycle_policy(svc, root(), ACCOUNT, name)
        return list(json.loads(found["lifecyclePolicyText"])["rules"])

    return list(console.run(get))


def test_lifecycle_rules_are_added_edited_previewed_and_deleted(console: Console) -> None:
    create_repository(console, "life")
    push(console, "life", 5, tags=["keep-1", "keep-2", "old-1", "old-2", "old-3"])
    base = "/console/repositories/life/-/lifecycle"
    empty = console.client.get(base)
    assert empty.status_code == 200 and "has no lifecycle policy" in empty.text
    assert 'aria-current="page">Lifecycle<' in empty.text

    added = console.post(base + "/rule", form_data())
    assert added.status_code == 303, added.text
    rule = {
        "rulePriority": 2,
        "description": "old builds",
        "selection": {
            "tagStatus": "tagged",
            "tagPrefixList": ["old-"],
            "countType": "imageCountMoreThan",
            "countNumber": 1,
        },
        "action": {"type": "transition", "targetStorageClass": "archive"},
    }
    second = form_data(
        priority="2", description="old builds", tag_status="tagged", tag_values="old-",
        count_type="imageCountMoreThan", count_number="1", action="transition",
    )  # fmt: skip
    assert console.post(base + "/rule", second).status_code == 303
    assert stored_rules(console, "life")[1] == rule
    table = console.client.get(base).text
    assert "More than 1 images" in table and "Transition to archive" in table and "14 days since pushed" in table

    # The form's preview runs the dry run on the policy with the rule as typed; nothing is saved.
    preview = console.post(base + "/rule", {**second, "original": "2", "count_number": "2", "intent": "preview"})
    assert preview.status_code == 200
    assert "<strong>1</strong> would move to the archive" in preview.text
    assert stored_rules(console, "life")[1]["selection"]["countNumber"] == 1
    ran = console.post(base + "/preview")
    assert ran.status_code == 303
    shown = console.client.get(base).text
    assert "Preview results" in shown and "<strong>2</strong> would move to the archive" in shown

    edit = console.client.get(base + "/rule?priority=2").text
    assert 'value="old-"' in edit and 'value="2"' in edit
    assert console.post(base + "/rule", {**second, "original": "2", "priority": "5"}).status_code == 303
    assert [r["rulePriority"] for r in stored_rules(console, "life")] == [1, 5]

    asked = console.post(base + "/rule/delete", {"priority": "5"})
    assert asked.status_code == 200 and "Delete lifecycle rule 5?" in asked.text
    assert console.post(base + "/rule/delete", {"priority": "5", "confirmed": "yes"}).status_code == 303
    assert [r["rulePriority"] for r in stored_rules(console, "life")] == [1]
    # The last rule goes with the policy (a policy has at least one rule).
    asked = console.post(base + "/rule/delete", {"priority": "1"})
    assert "the lifecycle policy is deleted with it" in asked.text
    assert console.post(base + "/rule/delete", {"priority": "1", "confirmed": "yes"}).status_code == 303
    assert "has no lifecycle policy" in console.client.get(base).text


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"priority": "x"}, "priority", "Enter a whole number"),
        ({"priority": "0"}, "priority", "Must be 1 or more."),
        ({"count_number": "0"}, "count_number", "Must be 1 or more."),
        ({"tag_status": "tagged"}, "tag_values", "Give at least one tag prefix or pattern."),
        ({"tag_values": "v1"}, "tag_values", "apply to tagged images only"),
        ({"tag_status": "tagged", "tag_match": "pattern", "tag_values": "a*b*c*d*e*f"}, "tag_values", "at most 4"),
        ({"count_type": "sinceImageTransitioned"}, "storage_class", "choose Archive"),
        ({"count_type": "sinceImageTransitioned", "storage_class": "archive", "count_number": "30"}, "count_number",
         "at least 90 days"),
        ({"tag_status": "any", "count_number": "3"}, "priority", "Another rule already has priority 1"),
    ],
)  # fmt: skip
def test_lifecycle_rule_errors_are_beside_their_field(
    console: Console, overrides: dict[str, str], field: str, words: str
) -> None:
    create_repository(console, "rules")
    base = "/console/repositories/rules/-/lifecycle"
    assert console.post(base + "/rule", form_data()).status_code == 303
    refused = console.post(base + "/rule", form_data(**overrides))
    assert refused.status_code == 400
    error = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', refused.text)
    assert error and words in html.unescape(error.group(1)), refused.text
    assert "Invalid parameter" not in refused.text  # plain words, not the API's constraint text
    assert len(stored_rules(console, "rules")) == 1


def test_every_core_refusal_has_plain_words() -> None:
    """Each reason parse_policy gives for a rule the form can build maps to a field."""
    form = RuleForm(priority="1", count_number="1")
    for bad in [
        {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
        {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
    ]:
        text = json.dumps({"rules": [{"rulePriority": 1, "selection": bad, "action": {"type": "expire"}}] * 2})
        with pytest.raises(lifecycle.InvalidParameterException) as caught:
            lifecycle.parse_policy(text)
        field, words = plain_problem(problem_of(caught.value), form)
        assert field and "Invalid" not in words


def test_image_page_shows_its_signing_and_replication_status(console: Console) -> None:
    """What DescribeImageSigningStatus and DescribeImageReplicationStatus say of the image, on
    its page; an image no rule covered says so."""
    create_repository(console, "copied")
    signed, plain = push(console, "copied", 2, tags=["signed", "plain"])
    profile = f"arn:aws:signer:us-east-1:{ACCOUNT}:/signing-profiles/release"

    async def record(svc: Services) -> None:
        async with svc.db.write() as conn:
            image_id = (
                await conn.execute(select(schema.images.c.id).where(schema.images.c.digest == signed))
            ).scalar_one()
            await conn.execute(
                insert(schema.image_signing_statuses).values(
                    image_id=image_id,
                    profile_arn=profile,
                    status="FAILED",
                    failure_code="SigningProfileNotActive",
                    failure_reason="The signing profile is canceled",
                    requested_at=0.0,
                )
            )
            for region, status, code in (("us-west-2", "COMPLETE", None), ("eu-west-1", "FAILED", "AccessDenied")):
                await conn.execute(
                    insert(schema.image_replication_statuses).values(
                        image_id=image_id,
                        destination_region=region,
                        destination_registry=ACCOUNT,
                        status=status,
                        failure_code=code,
                        requested_at=0.0,
                        next_attempt_at=0.0,
                    )
                )

    console.run(record)
    page = html.unescape(console.client.get(f"/console/repositories/copied/-/image?digest={signed}").text)
    section = page[page.index('id="copies-heading"') :]
    assert profile in section and "SigningProfileNotActive: The signing profile is canceled" in section
    assert re.search(r"us-west-2</th>\s*<td>" + ACCOUNT + r"</td>\s*<td>COMPLETE</td>", section)
    assert re.search(r"eu-west-1</th>\s*<td>" + ACCOUNT + r"</td>\s*<td>FAILED</td>\s*<td>AccessDenied</td>", section)
    other = html.unescape(console.client.get(f"/console/repositories/copied/-/image?digest={plain}").text)
    assert "No managed signing rule covered this image" in other
    assert "No replication rule covered this image" in other
