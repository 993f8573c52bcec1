"""Scans never silently clean: an image none of whose ecosystems has data fails, partial coverage
and stale data are said out loud (in the scan status and on the console's findings page)."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from dockyard.audit.events import image_scan_event
from dockyard.core.scanning import scans
from dockyard.core.scanning.scan_hooks import is_no_data_failure, is_stale, scan_status
from dockyard.core.services import Services
from dockyard.store import schema
from tests.support.console_app import console_app, root
from tests.unit.test_console_pages import create_repository, push_images

DAY = 86400.0


def test_an_inventory_with_no_data_for_any_ecosystem_fails_and_says_how_to_fix_it() -> None:
    nothing = scans.Evaluation([], None, ("Debian", "PyPI"), ("Debian", "PyPI"))
    assert nothing.status == "FAILED"
    assert nothing.description == (
        "VulnerabilityDataUnavailableError: No vulnerability data is loaded for the image's package ecosystems "
        "(Debian, PyPI). To scan it, run `dockyard vulndb update` or `dockyard vulndb import`, then scan the "
        "image again."
    )
    assert is_no_data_failure(nothing.status, nothing.description)
    partial = scans.Evaluation([], 1.0, ("Debian", "PyPI"), ("PyPI",))
    assert partial.status == "COMPLETE"
    assert partial.description == (
        "The scan was completed successfully. No vulnerability data is loaded for PyPI, so those packages were "
        "not checked: run `dockyard vulndb update` or `dockyard vulndb import`."
    )
    assert scans.Evaluation([], 1.0, ("Debian",), ()).description == scans.COMPLETE_DESCRIPTION
    unsupported = scans.Evaluation([], None, (), ())
    assert (unsupported.status, unsupported.description) == ("FAILED", scans.UNSUPPORTED_DESCRIPTION)
    assert not is_no_data_failure(unsupported.status, unsupported.description)


class _Row:
    def __init__(self, status: str, description: str, source_updated_at: float | None) -> None:
        self.status, self.description, self.source_updated_at = status, description, source_updated_at


def test_stale_data_is_judged_when_asked_and_named_in_the_status() -> None:
    moment = time.time()
    assert not is_stale(moment - 6 * DAY, 7.0, moment) and is_stale(moment - 8 * DAY, 7.0, moment)
    assert not is_stale(None, 7.0, moment)
    fresh = scan_status(_Row("COMPLETE", scans.COMPLETE_DESCRIPTION, moment - DAY), 7.0)
    assert fresh == {"status": "COMPLETE", "description": scans.COMPLETE_DESCRIPTION}
    old = scan_status(_Row("COMPLETE", scans.COMPLETE_DESCRIPTION, 1_700_000_000.0), 7.0)
    assert old["description"] == (
        "The scan was completed successfully. The vulnerability data is stale: it was last updated at "
        "2023-11-14T22:13:20Z, more than 7 days ago. Run `dockyard vulndb update` or `dockyard vulndb import`."
    )


def test_the_image_scan_event_is_ecrs_eventbridge_event() -> None:
    event = image_scan_event(
        "123456789012", "us-east-1", "app", "sha256:" + "a" * 64, ["v1"], "COMPLETE", {"HIGH": 2}, 1_700_000_000.0
    )
    assert event["eventName"] == "ECR Image Scan" and event["eventType"] == "AwsServiceEvent"
    details = event["serviceEventDetails"]
    assert {k: details[k] for k in ("version", "detail-type", "source", "account", "time", "region")} == {
        "version": "0",
        "detail-type": "ECR Image Scan",
        "source": "aws.ecr",
        "account": "123456789012",
        "time": "2023-11-14T22:13:20Z",
        "region": "us-east-1",
    }
    assert details["resources"] == ["arn:aws:ecr:us-east-1:123456789012:repository/app"]
    assert details["detail"] == {
        "scan-status": "COMPLETE",
        "repository-name": "app",
        "finding-severity-counts": {"HIGH": 2},
        "image-digest": "sha256:" + "a" * 64,
        "image-tags": ["v1"],
    }


async def _stale_scan(svc: Services, digest: str, updated: float) -> dict[str, Any]:
    """Store a completed scan matched against data last updated at `updated`; describe it."""
    async with svc.db.write() as conn:
        image_id = (await conn.execute(schema.images.select().where(schema.images.c.digest == digest))).one().id
        repository_id = (await conn.execute(schema.repositories.select())).one().id
        await conn.execute(
            insert(schema.image_scans).values(
                image_id=image_id, repository_id=repository_id, status="COMPLETE",
                description=scans.COMPLETE_DESCRIPTION, trigger="MANUAL", requested_at=updated,
                completed_at=updated, source_updated_at=updated, severity_counts="{}",
            )
        )  # fmt: skip
    return await scans.describe_image_scan_findings(svc, root(), "123456789012", "old", {"imageDigest": digest})


def test_the_console_and_the_api_show_stale_data(tmp_path: Path) -> None:
    for console in console_app(tmp_path, vulndb_max_age_days=3.0):
        assert console.sign_in().status_code == 303
        create_repository(console, "old")
        (digest,) = push_images(console, "old", 1)
        updated = time.time() - 5 * DAY
        found = console.run(functools.partial(_stale_scan, digest=digest, updated=updated))
        assert found["imageScanFindings"]["vulnerabilitySourceUpdatedAt"] == updated
        assert "The vulnerability data is stale" in found["imageScanStatus"]["description"]
        assert "more than 3 days ago" in found["imageScanStatus"]["description"]
        page = console.client.get(f"/console/repositories/old/-/findings?digest={digest}")
        assert page.status_code == 200
        assert "The vulnerability data these findings come from is more than 3 days old" in page.text
