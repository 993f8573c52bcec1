"""The console's repository and IAM pages, in process: permissions statements, the JSON editor,
settings, the Images tab over 1,000 images, multi-delete, scan findings."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.core.identity import iam_entities
from dockyard.core.registry import images, layers, repositories
from dockyard.core.registry.repositories import RepositorySettings
from dockyard.core.services import Services
from dockyard.doors.console import statements
from dockyard.doors.console.statements import StatementError, StatementForm
from tests.support.console_app import ACCOUNT, Console, console_app, root

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    for app in console_app(tmp_path):
        assert app.sign_in().status_code == 303
        yield app


def create_repository(console: Console, name: str) -> None:
    async def create(svc: Services) -> None:
        await repositories.create_repository(svc, root(), ACCOUNT, name, RepositorySettings())

    console.run(create)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _upload(svc: Services, name: str, data: bytes) -> dict[str, Any]:
    started = await layers.initiate_layer_upload(svc, root(), ACCOUNT, name)
    await layers.upload_layer_part(svc, root(), ACCOUNT, name, started["uploadId"], 0, len(data) - 1, data)
    await layers.complete_layer_upload(svc, root(), ACCOUNT, name, started["uploadId"], [digest_of(data)])
    return {"digest": digest_of(data), "size": len(data)}


def push_images(console: Console, name: str, count: int, tagged: bool = True) -> list[str]:
    """`count` distinct images sharing one config and one layer; every other one tagged."""

    async def push(svc: Services) -> list[str]:
        config = await _upload(svc, name, json.dumps({"architecture": "amd64", "os": "linux"}).encode())
        layer = await _upload(svc, name, b"\x1f\x8b" + bytes(range(256)) * 40)
        digests = []
        for n in range(count):
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, **config},
                "layers": [{"mediaType": OCI_LAYER, **layer}],
                "annotations": {"n": str(n)},
            }
            data = json.dumps(manifest).encode()
            tag = f"t{n:04d}" if tagged and n % 2 == 0 else None
            await images.put_manifest(svc, root(), ACCOUNT, name, data, OCI_MANIFEST, tag=tag)
            digests.append(digest_of(data))
        return digests

    return list(console.run(push))


# --- statements (no app needed) ----------------------------------------------------------------


def form(**overrides: Any) -> StatementForm:
    fields: dict[str, Any] = {
        "sid": "AllowPull",
        "effect": "Allow",
        "everybody": False,
        "accounts": "",
        "entities": (),
        "preset": "pull",
        "actions": (),
    }
    return StatementForm(**{**fields, **overrides})


def test_presets_are_the_seeds() -> None:
    pull = statements.build_statement(form(everybody=True))
    assert pull == {
        "Sid": "AllowPull",
        "Effect": "Allow",
        "Principal": "*",
        "Action": ["ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability"],
    }
    push_pull = statements.build_statement(form(preset="push-pull", accounts="111122223333"))
    assert push_pull["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    assert push_pull["Action"][3:] == [
        "ecr:PutImage",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
    ]
    everything = statements.build_statement(form(preset="all", effect="Deny", everybody=True))
    assert everything["Action"] == "ecr:*" and everything["Effect"] == "Deny"
    chosen = statements.build_statement(
        form(preset="custom", actions=("ecr:ListImages", "ecr:Nonsense"), entities=("arn:aws:iam::1:user/a",))
    )
    assert chosen["Action"] == "ecr:ListImages"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sid": ""}, "Sid is required"),
        ({"sid": "has space"}, "letters and digits"),
        ({"effect": "Maybe", "everybody": True}, "Effect must be"),
        ({}, "Choose a principal"),
        ({"accounts": "12345"}, "not an AWS account number"),
        ({"everybody": True, "preset": "custom"}, "at least one action"),
        ({"everybody": True, "preset": ""}, "Choose the actions"),
    ],
)
def test_statement_form_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(StatementError, match=message):
        statements.build_statement(form(**overrides))


def test_adding_and_removing_statements() -> None:
    first = statements.with_statement(None, statements.build_statement(form(everybody=True)))
    assert json.loads(first)["Version"] == "2008-10-17"
    with pytest.raises(StatementError, match="already exists"):
        statements.with_statement(first, statements.build_statement(form(everybody=True)))
    second = statements.with_statement(first, statements.build_statement(form(sid="Other", everybody=True)))
    assert [v.sid for v in statements.statement_views(second)] == ["AllowPull", "Other"]
    remaining = statements.without_statement(second, 0)
    assert remaining is not None
    assert [v.sid for v in statements.statement_views(remaining)] == ["Other"]
    assert statements.without_statement(remaining, 0) is None
    with pytest.raises(StatementError):
        statements.without_statement(remaining, 5)


# --- pages -------------------------------------------------------------------------------------


def test_permissions_tab(console: Console) -> None:
    create_repository(console, "team/app")
    base = "/console/repositories/team/app/-/permissions"
    assert "This repository has no policy" in console.client.get(base).text

    bad = console.post(f"{base}/add", {"sid": "no spaces", "effect": "Allow", "everybody": "on", "preset": "pull"})
    assert bad.status_code == 400
    assert "letters and digits" in bad.text
    assert 'value="no spaces"' in bad.text  # the form keeps what was typed

    added = console.post(f"{base}/add", {"sid": "AllowPull", "effect": "Allow", "everybody": "on", "preset": "pull"})
    assert added.status_code == 303
    page = console.client.get(base).text
    assert "AllowPull" in page and "Everybody (*)" in page and "ecr:BatchGetImage" in page

    broken = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*"}]}'
    refused = console.post(f"{base}/json", {"policy_text": broken})
    assert refused.status_code == 400
    assert "InvalidParameterException" in refused.text
    assert "Invalid parameter at &#39;PolicyText&#39; failed to satisfy constraint" in refused.text
    assert "has no Principal" in refused.text  # what exactly is wrong
    assert "&#34;ecr:*&#34;" in refused.text or "&quot;ecr:*&quot;" in refused.text  # the text stays

    edited = {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "A", "Effect": "Allow", "Principal": "*", "Action": "ecr:*"}],
    }
    assert console.post(f"{base}/json", {"policy_text": json.dumps(edited)}).status_code == 303
    page = console.client.get(base).text
    assert ">A<" in page and "AllowPull" not in page

    stale = console.post(f"{base}/remove", {"index": "0", "sid": "AllowPull"})
    assert stale.status_code == 409
    asked = console.post(f"{base}/remove", {"index": "0", "sid": "A"})
    assert asked.status_code == 200 and "Remove statement A?" in asked.text  # confirm first
    assert ">A<" in console.client.get(base).text
    assert console.post(f"{base}/remove", {"index": "0", "sid": "A", "confirmed": "yes"}).status_code == 303
    assert "This repository has no policy" in console.client.get(base).text


def test_statement_names_iam_users(console: Console) -> None:
    create_repository(console, "shared")

    async def user(svc: Services) -> None:
        await iam_entities.create_user(svc, root(), "pull-user-1")

    console.run(user)
    arn = f"arn:aws:iam::{ACCOUNT}:user/pull-user-1"
    assert arn in console.client.get("/console/repositories/shared/-/permissions/add").text
    data = {"sid": "AllowPull", "effect": "Allow", "entity": arn, "accounts": "111122223333", "preset": "pull"}
    assert console.post("/console/repositories/shared/-/permissions/add", data).status_code == 303
    policy = console.client.get("/console/repositories/shared/-/permissions/json").text
    assert arn in policy and "arn:aws:iam::111122223333:root" in policy


def test_settings_tab(console: Console) -> None:
    create_repository(console, "settings-repo")
    base = "/console/repositories/settings-repo/-/settings"
    page = console.client.get(base).text
    assert 'value="MUTABLE" checked' in page

    assert console.post(f"{base}/tag-mutability", {"mutability": "IMMUTABLE"}).status_code == 303
    assert console.post(f"{base}/scanning", {"scan_on_push": "on"}).status_code == 303
    page = console.client.get(base).text
    assert 'value="IMMUTABLE" checked' in page
    assert re.search(r'id="scan_on_push" name="scan_on_push"\s*checked', page)
    listing = console.client.get("/console/repositories").text
    assert "(IMMUTABLE)" in listing

    refused = console.post(f"{base}/tag-mutability", {"mutability": "IMMUTABLE_WITH_EXCLUSION"})
    assert refused.status_code == 400
    assert "imageTagMutabilityExclusionFilters must be specified" in refused.text
    kept = {"mutability": "IMMUTABLE_WITH_EXCLUSION", "exclusions": "latest\ndev-*"}
    assert console.post(f"{base}/tag-mutability", kept).status_code == 303
    assert "dev-*" in console.client.get(base).text

    bad = console.post(f"{base}/lifecycle", {"lifecycle_text": '{"rules": []}'})
    assert bad.status_code == 400
    assert "InvalidParameterException" in bad.text or "ValidationException" in bad.text
    rule = {
        "rulePriority": 1,
        "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14},
        "action": {"type": "expire"},
    }
    good = json.dumps({"rules": [rule]})
    assert console.post(f"{base}/lifecycle", {"lifecycle_text": good}).status_code == 303
    assert "sinceImagePushed" in console.client.get(base).text
    assert console.post(f"{base}/lifecycle/delete").status_code == 200  # the confirmation step
    assert console.post(f"{base}/lifecycle/delete", {"confirmed": "yes"}).status_code == 303
    assert "Delete lifecycle policy" not in console.client.get(base).text


def test_images_tab_pages_through_1000_images_quickly(console: Console) -> None:
    create_repository(console, "big")
    pushed = push_images(console, "big", 1000)
    seen: list[str] = []
    url: str | None = "/console/repositories/big/-/images"
    slowest = 0.0
    while url:
        started = time.perf_counter()
        page = console.client.get(url)
        slowest = max(slowest, time.perf_counter() - started)
        assert page.status_code == 200
        seen += re.findall(r'name="digest" value="(sha256:[0-9a-f]{64})"', page.text)
        found = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert sorted(seen) == sorted(pushed)
    assert slowest < 2.0, f"a page of 100 images took {slowest:.2f}s"

    untagged = console.client.get("/console/repositories/big/-/images?status=untagged").text
    assert "&lt;untagged&gt;" in untagged and ">t0000<" not in untagged
    # Newest first: the first image pushed is on the first page of the oldest-first order.
    tagged = console.client.get("/console/repositories/big/-/images?status=tagged&order=asc").text
    assert ">t0000<" in tagged and "&lt;untagged&gt;" not in tagged


def test_images_are_deleted_by_digest(console: Console) -> None:
    create_repository(console, "del")
    first, second = push_images(console, "del", 2)
    confirm = console.client.get(f"/console/repositories/del/-/images/delete?digest={first}&digest={second}")
    assert confirm.status_code == 200 and first in confirm.text and "cannot be undone" in confirm.text
    done = console.post("/console/repositories/del/-/images/delete", {"digest": [first]})
    assert done.status_code == 303
    page = console.client.get("/console/repositories/del/-/images").text
    assert first not in page and second in page
    missing = console.post("/console/repositories/del/-/images/delete", {"digest": [first]})
    assert missing.status_code == 400
    assert "ImageNotFound" in missing.text


def test_several_repositories_are_deleted_with_their_images(console: Console) -> None:
    for name in ("one", "two/three"):
        create_repository(console, name)
    push_images(console, "one", 1)
    confirm = console.client.get("/console/repositories/delete?name=one&name=two/three")
    assert "Any images in the selected repositories are also deleted." in confirm.text
    done = console.post("/console/repositories/delete", {"name": ["one", "two/three"]})
    assert done.status_code == 303
    listing = console.client.get(done.headers["location"]).text
    assert "Deleted one, two/three" in listing
    assert "No repositories." in listing
    gone = console.post("/console/repositories/delete", {"name": ["one"]})
    assert gone.status_code == 400
    assert "RepositoryNotFoundException" in gone.text


def test_findings_of_an_unscanned_image(console: Console) -> None:
    create_repository(console, "scanme")
    (digest,) = push_images(console, "scanme", 1)
    page = console.client.get(f"/console/repositories/scanme/-/findings?digest={digest}")
    assert page.status_code == 200
    assert "This image has not been scanned." in page.text
    started = console.post("/console/repositories/scanme/-/findings", {"digest": digest})
    assert started.status_code in (303, 400)  # 400: this build's scanner refuses the image type


def test_push_commands_name_this_registry(console: Console) -> None:
    create_repository(console, "team-a/web-app")
    page = console.client.get("/console/repositories/team-a/web-app/-/push-commands").text
    assert (
        "aws ecr get-login-password --region us-east-1 --endpoint-url http://testserver | "
        "docker login --username AWS --password-stdin 127.0.0.1:5000"
    ) in page
    assert "docker tag team-a/web-app:latest 127.0.0.1:5000/team-a/web-app:latest" in page
    assert "docker push 127.0.0.1:5000/team-a/web-app:latest" in page


def test_iam_user_keys_and_policies(console: Console) -> None:
    assert console.post("/console/iam/users", {"user_name": "erin"}).status_code == 303
    assert "erin" in console.client.get("/console/iam/users").text
    created = console.post("/console/iam/users/erin/keys")
    key_id = re.search(r'id="new-access-key-id">([^<]+)<', created.text)
    assert key_id is not None
    page = console.client.get("/console/iam/users/erin").text
    assert key_id.group(1) in page and "Deactivate" in page
    status = {"access_key_id": key_id.group(1), "status": "Inactive"}
    assert console.post("/console/iam/users/erin/keys/status", status).status_code == 303
    assert "Activate" in console.client.get("/console/iam/users/erin").text
    readonly = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
    assert readonly in page  # offered for attaching
    assert console.post("/console/iam/users/erin/policies/attach", {"policy_arn": readonly}).status_code == 303
    conflict = console.post("/console/iam/users/erin/delete", {"confirmed": "yes"})
    assert conflict.status_code == 409
    assert "DeleteConflict" in conflict.text
    detach = {"policy_arn": readonly, "confirmed": "yes"}
    assert console.post("/console/iam/users/erin/policies/detach", detach).status_code == 303
    delete_key = {"access_key_id": key_id.group(1), "confirmed": "yes"}
    assert console.post("/console/iam/users/erin/keys/delete", delete_key).status_code == 303
    assert console.post("/console/iam/users/erin/delete", {"confirmed": "yes"}).status_code == 303
    listed = console.client.get("/console/iam/users").text
    assert "Deleted user erin." in listed  # the notice, once
    assert "erin" not in console.client.get("/console/iam/users").text
