"""Vulnerability data that is never silently missing nor stale: a scan with no data for its image's
ecosystems fails (and the pull gate refuses the image), stale data says so, and with continuous
scanning each import re-evaluates stored inventories (the layers are not read again), recording
ECR's "ECR Image Scan" events in the audit trail."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from tests.integration.test_scanning import SCAN_TIMEOUT, dockyard, login, push, summary, wait_for_scan
from tests.support.clients import AwsCli, Boto3Clients, Podman, Skopeo
from tests.support.registry_http import RegistryHttp
from tests.support.scan_images import OSV_FIXTURES, debian_base, dpkg_field
from tests.support.server import DockyardServer, ServerFactory

NO_DEBIAN_DATA = (
    "VulnerabilityDataUnavailableError: No vulnerability data is loaded for the image's package ecosystems "
    "(Debian). To scan it, run `dockyard vulndb update` or `dockyard vulndb import`, then scan the image again."
)
NEW_ADVISORY = "DEBIAN-CVE-2017-18018.json"  # coreutils, MEDIUM


def scan_events(server: DockyardServer, digest: str) -> list[dict[str, Any]]:
    events = Boto3Clients(server)("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "ECR Image Scan"}], MaxResults=50
    )["Events"]
    found = [json.loads(e["CloudTrailEvent"]) for e in events]
    return [e for e in found if e["serviceEventDetails"]["detail"]["image-digest"] == digest]


def manifest_status(server: DockyardServer, repository: str, digest: str) -> tuple[int, str]:
    response = RegistryHttp.for_server(server).request("GET", f"/v2/{repository}/manifests/{digest}")
    return response.status_code, response.text


def wait_until(what: str, check: Any) -> Any:
    deadline = time.monotonic() + SCAN_TIMEOUT
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.2)


def test_an_empty_database_fails_the_scan_and_the_gate_refuses_until_data_is_loaded(
    dockyard_server_factory: ServerFactory, aws: AwsCli, skopeo: Skopeo, podman: Podman, tmp_path: Path
) -> None:
    server = dockyard_server_factory(env={"DOCKYARD_SCAN_QUOTA_SECONDS": "0"})
    login(server, aws, skopeo, podman)
    ecr = Boto3Clients(server)("ecr")
    ecr.create_repository(repositoryName="data/app")
    image = push(skopeo, server, tmp_path, "data/app", "v1", [debian_base()])

    ecr.start_image_scan(repositoryName="data/app", imageId={"imageTag": "v1"})
    failed = wait_for_scan(ecr, "data/app", image.digest)
    assert failed["imageScanStatus"] == {"status": "FAILED", "description": NO_DEBIAN_DATA}
    assert "imageScanFindings" not in failed
    detail = ecr.describe_images(repositoryName="data/app", imageIds=[{"imageTag": "v1"}])["imageDetails"][0]
    assert detail["imageScanStatus"] == {"status": "FAILED", "description": NO_DEBIAN_DATA}

    # The gate on: an image nothing is known about is refused, not waved through as clean.
    dockyard(server, "gate", "set", "HIGH")
    status, body = manifest_status(server, "data/app", image.digest)
    assert status == 403 and "refused by the scan gate" in body and "VulnerabilityDataUnavailableError" in body
    refused = podman("pull", f"{server.registry}/data/app:v1", check=False)
    assert refused.returncode != 0 and "refused by the scan gate" in refused.stderr

    for fixtures in ("Debian", "CVE"):  # the CVE records lend the Debian ones their severities
        dockyard(server, "vulndb", "import", str(OSV_FIXTURES / fixtures))
    ecr.start_image_scan(repositoryName="data/app", imageId={"imageTag": "v1"})
    done = wait_for_scan(ecr, "data/app", image.digest)
    assert done["imageScanStatus"] == {"status": "COMPLETE", "description": "The scan was completed successfully."}
    assert summary(done["imageScanFindings"]["findings"]) == [
        ("CVE-2017-18018", "MEDIUM", "coreutils", dpkg_field("coreutils")),
        ("CVE-2011-3374", "LOW", "apt", dpkg_field("apt")),
        ("CVE-2005-2541", "INFORMATIONAL", "tar", dpkg_field("tar")),
    ]
    assert abs(done["imageScanFindings"]["vulnerabilitySourceUpdatedAt"].timestamp() - time.time()) < 600
    assert manifest_status(server, "data/app", image.digest)[0] == 200  # nothing at or above HIGH

    events = scan_events(server, image.digest)
    assert [e["serviceEventDetails"]["detail"]["scan-status"] for e in events] == ["COMPLETE", "FAILED"]
    newest = events[0]
    assert newest["eventType"] == "AwsServiceEvent" and newest["eventSource"] == "ecr.amazonaws.com"
    assert newest["serviceEventDetails"]["detail-type"] == "ECR Image Scan"
    assert newest["serviceEventDetails"]["source"] == "aws.ecr"
    assert newest["serviceEventDetails"]["detail"] == {
        "scan-status": "COMPLETE",
        "repository-name": "data/app",
        "finding-severity-counts": {"MEDIUM": 1, "LOW": 1, "INFORMATIONAL": 1},
        "image-digest": image.digest,
        "image-tags": ["v1"],
    }


def test_continuous_scanning_re_evaluates_stored_inventories_without_reading_layers(
    dockyard_server_factory: ServerFactory, aws: AwsCli, skopeo: Skopeo, podman: Podman, tmp_path: Path
) -> None:
    # Every piece of data counts as stale on this server.
    server = dockyard_server_factory(env={"DOCKYARD_VULNDB_MAX_AGE": "0"})
    login(server, aws, skopeo, podman)
    ecr = Boto3Clients(server)("ecr")
    rules = [
        {"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [{"filter": "live-*", "filterType": "WILDCARD"}]}
    ]
    ecr.put_registry_scanning_configuration(scanType="BASIC", rules=rules)
    pushed = {}
    for name in ("live-a", "live-b"):
        ecr.create_repository(repositoryName=name)
        pushed[name] = push(skopeo, server, tmp_path / name, name, "v1", [debian_base()])
    for name, image in pushed.items():
        assert wait_for_scan(ecr, name, image.digest)["imageScanStatus"]["description"] == NO_DEBIAN_DATA

    # The layers go: from now on, nothing can be learnt by reading them again.
    for layer in pushed["live-a"].layers:
        hexpart = layer.digest.partition(":")[2]
        for path in (server.data_dir / "storage").rglob(hexpart):
            path.unlink()
    dockyard(server, "gate", "set", "MEDIUM")

    # Debian data without the coreutils advisory: the stored inventories are matched, and complete.
    known = tmp_path / "known"
    shutil.copytree(OSV_FIXTURES / "Debian", known)
    shutil.copytree(OSV_FIXTURES / "CVE", known, dirs_exist_ok=True)
    (known / NEW_ADVISORY).unlink()
    dockyard(server, "vulndb", "import", str(known))

    def findings_of(name: str, count: int) -> dict[str, Any] | None:
        found = ecr.describe_image_scan_findings(repositoryName=name, imageId={"imageTag": "v1"})
        complete = found["imageScanStatus"]["status"] == "COMPLETE"
        return found if complete and len(found["imageScanFindings"]["findings"]) == count else None

    for name in pushed:
        found = wait_until(f"re-evaluation of {name}", lambda name=name: findings_of(name, 2))
        assert [f[0] for f in summary(found["imageScanFindings"]["findings"])] == ["CVE-2011-3374", "CVE-2005-2541"]
        description = found["imageScanStatus"]["description"]
        assert description.startswith("The scan was completed successfully. The vulnerability data is stale: ")
        assert "more than 0 days ago. Run `dockyard vulndb update` or `dockyard vulndb import`." in description
        assert found["imageScanFindings"]["vulnerabilitySourceUpdatedAt"].timestamp() <= time.time()
        assert manifest_status(server, name, pushed[name].digest)[0] == 200  # LOW and below only

    # A newly published advisory reaches every image with the package, and the gate acts on it.
    dockyard(server, "vulndb", "import", str(OSV_FIXTURES / "Debian" / NEW_ADVISORY))
    for name, image in pushed.items():
        found = wait_until(f"the new finding in {name}", lambda name=name: findings_of(name, 3))
        assert summary(found["imageScanFindings"]["findings"])[0] == (
            "CVE-2017-18018", "MEDIUM", "coreutils", dpkg_field("coreutils"),
        )  # fmt: skip
        status, body = manifest_status(server, name, image.digest)
        assert status == 403 and "CVE-2017-18018 (MEDIUM, coreutils" in body

    digest = pushed["live-a"].digest  # both repositories hold the same image
    details = [e["serviceEventDetails"]["detail"] for e in scan_events(server, digest)]
    recorded = sorted(
        (d["repository-name"], d["scan-status"], sorted(d.get("finding-severity-counts", {}).items())) for d in details
    )
    for name in pushed:
        assert [r[1:] for r in recorded if r[0] == name] == [
            ("COMPLETE", [("INFORMATIONAL", 1), ("LOW", 1)]),
            ("COMPLETE", [("INFORMATIONAL", 1), ("LOW", 1), ("MEDIUM", 1)]),
            ("FAILED", []),
        ]
