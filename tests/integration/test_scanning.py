"""Image scanning through real clients: exact findings through boto3 and the AWS CLI, scan on push,
`aws ecr wait image-scan-complete`, the 24-hour quota, unsupported and broken images, registry
scanning configuration with continuous re-matching, the pull gate with podman, SBOM referrers, and
a registry that stays responsive while a 1 GiB image is scanned.

The images carry real package databases: this machine's own dpkg status, an apk database, Python
dist-info and npm packages; the vulnerability database is a fixture of real OSV advisories."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import tarfile
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.clients import AwsCli, Boto3Clients, Podman, Skopeo
from tests.support.images import BuiltImage, build_image, build_index
from tests.support.registry_http import RegistryHttp
from tests.support.scan_images import OSV_FIXTURES, alpine_base, debian_base, dpkg_field, npm_app, python_packages
from tests.support.server import DockyardServer, ServerFactory, dockyard_command

SCAN_TIMEOUT = 120.0
UNSUPPORTED = "UnsupportedImageError: The operating system and/or package manager are not supported."


def dockyard(server: DockyardServer, *args: str) -> str:
    """Run the `dockyard` command against a server's data directory."""
    done = subprocess.run(
        [*dockyard_command(), *args, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env=server.server_env(),
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def import_fixtures(server: DockyardServer, path: Path = OSV_FIXTURES) -> None:
    dockyard(server, "vulndb", "import", str(path))


def login(server: DockyardServer, aws: AwsCli, skopeo: Skopeo, podman: Podman) -> None:
    password = aws("ecr", "get-login-password", server=server)
    skopeo.login(server.registry, password)
    podman.login(server.registry, password)


def make_repository(ecr: Any, name: str, scan_on_push: bool = False) -> None:
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": scan_on_push})


def push(
    skopeo: Skopeo, server: DockyardServer, tmp_path: Path, repository: str, tag: str, layers: list[Any]
) -> BuiltImage:
    image = build_image(tmp_path / f"layout-{tag}", tag, layers=layers)
    skopeo.copy(image, f"docker://{server.registry}/{repository}:{tag}")
    return image


def wait_for_scan(ecr: Any, repository: str, digest: str, timeout: float = SCAN_TIMEOUT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = ecr.describe_image_scan_findings(repositoryName=repository, imageId={"imageDigest": digest})
            if found["imageScanStatus"]["status"] != "IN_PROGRESS":
                return found
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ScanNotFoundException":
                raise
        assert time.monotonic() < deadline, f"scan of {repository}@{digest} did not finish"
        time.sleep(0.2)


def summary(findings: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    rows = []
    for finding in findings:
        attributes = {a["key"]: a["value"] for a in finding["attributes"]}
        rows.append((finding["name"], finding["severity"], attributes["package_name"], attributes["package_version"]))
    return rows


def app_layers() -> list[Any]:
    """A Debian image (this machine's dpkg database) with a Python and a Node.js application on top."""
    return [
        debian_base(),
        python_packages({"PyYAML": "5.3.1", "urllib3": "1.26.4", "requests": "2.31.0"}),
        npm_app({"lodash": "4.17.20"}, {"lodash": "4.17.20", "minimist": "1.2.5"}),
    ]


def expected_app_findings() -> list[tuple[str, str, str, str]]:
    return [
        ("CVE-2020-14343", "CRITICAL", "PyYAML", "5.3.1"),
        ("CVE-2021-44906", "CRITICAL", "minimist", "1.2.5"),
        ("CVE-2021-23337", "HIGH", "lodash", "4.17.20"),
        ("CVE-2021-33503", "HIGH", "urllib3", "1.26.4"),
        ("CVE-2017-18018", "MEDIUM", "coreutils", dpkg_field("coreutils")),
        ("CVE-2011-3374", "LOW", "apt", dpkg_field("apt")),
        ("CVE-2005-2541", "INFORMATIONAL", "tar", dpkg_field("tar")),
    ]


APP_COUNTS = {"CRITICAL": 2, "HIGH": 2, "MEDIUM": 1, "LOW": 1, "INFORMATIONAL": 1}


@pytest.fixture(scope="module")
def scanning(dockyard_server: DockyardServer, aws: AwsCli, skopeo: Skopeo, podman: Podman) -> DockyardServer:
    import_fixtures(dockyard_server)
    login(dockyard_server, aws, skopeo, podman)
    return dockyard_server


def test_start_image_scan_and_exact_findings_through_boto3(
    scanning: DockyardServer, boto3_client: Boto3Clients, skopeo: Skopeo, tmp_path: Path
) -> None:
    ecr = boto3_client("ecr")
    make_repository(ecr, "scan/app")
    image = push(skopeo, scanning, tmp_path, "scan/app", "v1", app_layers())

    with pytest.raises(ClientError) as missing:
        ecr.describe_image_scan_findings(repositoryName="scan/app", imageId={"imageTag": "v1"})
    assert missing.value.response["Error"] == {
        "Code": "ScanNotFoundException",
        "Message": "Image scan does not exist for the image with '{imageDigest:'null', imageTag:'v1'}' in the "
        f"repository with name 'scan/app' in the registry with id '{scanning.account_id}'",
    }

    started = ecr.start_image_scan(repositoryName="scan/app", imageId={"imageTag": "v1"})
    assert started["imageScanStatus"] == {"status": "IN_PROGRESS"}
    assert started["imageId"] == {"imageDigest": image.digest, "imageTag": "v1"}
    assert (started["registryId"], started["repositoryName"]) == (scanning.account_id, "scan/app")

    before = time.time()
    found = wait_for_scan(ecr, "scan/app", image.digest)
    assert found["imageScanStatus"] == {"status": "COMPLETE", "description": "The scan was completed successfully."}
    result = found["imageScanFindings"]
    assert summary(result["findings"]) == expected_app_findings()
    assert result["findingSeverityCounts"] == APP_COUNTS
    assert before - 120 < result["imageScanCompletedAt"].timestamp() <= time.time() + 1
    assert result["vulnerabilitySourceUpdatedAt"] <= result["imageScanCompletedAt"]
    pyyaml = result["findings"][0]
    assert pyyaml["uri"] == "https://nvd.nist.gov/vuln/detail/CVE-2020-14343"
    assert pyyaml["description"].startswith("A vulnerability was discovered in the PyYAML library")
    assert pyyaml["attributes"] == [
        {"key": "package_version", "value": "5.3.1"},
        {"key": "package_name", "value": "PyYAML"},
        {"key": "CVSS3_VECTOR", "value": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
        {"key": "CVSS3_SCORE", "value": "9.8"},
    ]

    pages, token = [], None
    while True:
        page = ecr.describe_image_scan_findings(
            repositoryName="scan/app", imageId={"imageDigest": image.digest}, maxResults=3,
            **({"nextToken": token} if token else {}),
        )  # fmt: skip
        pages.append(len(page["imageScanFindings"]["findings"]))
        token = page.get("nextToken")
        if not token:
            break
    assert pages == [3, 3, 1]
    paginated = ecr.get_paginator("describe_image_scan_findings").paginate(
        repositoryName="scan/app", imageId={"imageTag": "v1"}, PaginationConfig={"PageSize": 2}
    )
    assert summary([f for p in paginated for f in p["imageScanFindings"]["findings"]]) == expected_app_findings()

    # DescribeImages carries the scan's status and summary, by id and in its listing alike.
    named = ecr.describe_images(repositoryName="scan/app", imageIds=[{"imageTag": "v1"}])["imageDetails"][0]
    listed = ecr.describe_images(repositoryName="scan/app")["imageDetails"][0]
    for detail in (named, listed):
        assert detail["imageScanStatus"] == found["imageScanStatus"]
        assert detail["imageScanFindingsSummary"] == {
            "imageScanCompletedAt": result["imageScanCompletedAt"],
            "vulnerabilitySourceUpdatedAt": result["vulnerabilitySourceUpdatedAt"],
            "findingSeverityCounts": APP_COUNTS,
        }

    with pytest.raises(ClientError) as quota:
        ecr.start_image_scan(repositoryName="scan/app", imageId={"imageDigest": image.digest})
    assert quota.value.response["Error"] == {
        "Code": "LimitExceededException",
        "Message": "The scan quota per image has been exceeded. Wait and try again.",
    }


def test_scan_on_push_the_waiter_and_the_aws_cli(
    scanning: DockyardServer, aws: AwsCli, skopeo: Skopeo, tmp_path: Path
) -> None:
    aws(
        "ecr",
        "create-repository",
        "--repository-name",
        "scan/alpine",
        "--image-scanning-configuration",
        "scanOnPush=true",
    )
    image = push(
        skopeo, scanning, tmp_path, "scan/alpine", "3.18",
        [alpine_base(), python_packages({"Jinja2": "3.1.4"}, site="usr/lib/python3.11/site-packages")],
    )  # fmt: skip
    aws("ecr", "wait", "image-scan-complete", "--repository-name", "scan/alpine", "--image-id", "imageTag=3.18")
    found = aws(
        "ecr", "describe-image-scan-findings", "--repository-name", "scan/alpine", "--image-id", "imageTag=3.18"
    )
    assert found["imageId"] == {"imageDigest": image.digest, "imageTag": "3.18"}
    assert found["imageScanStatus"]["status"] == "COMPLETE"
    assert summary(found["imageScanFindings"]["findings"]) == [
        ("CVE-2023-5363", "HIGH", "openssl", "3.1.0-r4"),
        ("CVE-2023-2650", "MEDIUM", "openssl", "3.1.0-r4"),
        ("CVE-2023-42363", "UNDEFINED", "busybox", "1.36.1-r5"),
    ]
    assert found["imageScanFindings"]["findingSeverityCounts"] == {"HIGH": 1, "MEDIUM": 1, "UNDEFINED": 1}
    described = aws("ecr", "describe-images", "--repository-name", "scan/alpine")["imageDetails"][0]
    assert described["imageScanStatus"] == {"status": "COMPLETE", "description": "The scan was completed successfully."}
    assert described["imageScanFindingsSummary"]["findingSeverityCounts"] == {"HIGH": 1, "MEDIUM": 1, "UNDEFINED": 1}
    # The scan on push counts against the once-a-day quota, as on ECR.
    refused = aws(
        "ecr", "start-image-scan", "--repository-name", "scan/alpine", "--image-id", "imageTag=3.18", check=False
    )
    assert refused.returncode == 255
    assert "An error occurred (LimitExceededException) when calling the StartImageScan operation: " in refused.stderr
    assert "The scan quota per image has been exceeded. Wait and try again." in refused.stderr


def test_unsupported_images_index_and_missing_images(
    scanning: DockyardServer, boto3_client: Boto3Clients, aws: AwsCli, skopeo: Skopeo, tmp_path: Path
) -> None:
    ecr = boto3_client("ecr")
    make_repository(ecr, "scan/odd")
    scratch = push(skopeo, scanning, tmp_path, "scan/odd", "scratch", [{"app/server": b"\x00binary"}])
    ecr.start_image_scan(repositoryName="scan/odd", imageId={"imageTag": "scratch"})
    found = wait_for_scan(ecr, "scan/odd", scratch.digest)
    assert found["imageScanStatus"] == {"status": "FAILED", "description": UNSUPPORTED}
    assert "imageScanFindings" not in found
    detail = ecr.describe_images(repositoryName="scan/odd", imageIds=[{"imageTag": "scratch"}])["imageDetails"][0]
    assert detail["imageScanStatus"] == {"status": "FAILED", "description": UNSUPPORTED}
    assert "imageScanFindingsSummary" not in detail
    waited = aws(
        "ecr", "wait", "image-scan-complete", "--repository-name", "scan/odd", "--image-id", "imageTag=scratch",
        check=False,
    )  # fmt: skip
    assert waited.returncode == 255 and "Waiter ImageScanComplete failed" in waited.stderr

    index = build_index(tmp_path / "index", "multi", layers=[512])
    skopeo.copy(index, f"docker://{scanning.registry}/scan/odd:multi", "--all")
    with pytest.raises(ClientError) as unsupported:
        ecr.start_image_scan(repositoryName="scan/odd", imageId={"imageTag": "multi"})
    assert unsupported.value.response["Error"]["Code"] == "UnsupportedImageTypeException"

    with pytest.raises(ClientError) as missing:
        ecr.start_image_scan(repositoryName="scan/odd", imageId={"imageTag": "nope"})
    assert missing.value.response["Error"] == {
        "Code": "ImageNotFoundException",
        "Message": "The image with imageId {imageDigest:'null', imageTag:'nope'} does not exist within the "
        f"repository with name 'scan/odd' in the registry with id '{scanning.account_id}'",
    }
    with pytest.raises(ClientError) as no_repo:
        ecr.describe_image_scan_findings(repositoryName="scan/none", imageId={"imageTag": "x"})
    assert no_repo.value.response["Error"]["Code"] == "RepositoryNotFoundException"


def test_a_truncated_layer_fails_its_scan_and_disturbs_nothing_else(
    scanning: DockyardServer, boto3_client: Boto3Clients, skopeo: Skopeo, tmp_path: Path
) -> None:
    ecr = boto3_client("ecr")
    make_repository(ecr, "scan/broken")
    http = RegistryHttp.for_server(scanning)
    good = build_image(tmp_path / "good", "good", layers=[alpine_base()])
    truncated = good.layers[0].data[: len(good.layers[0].data) // 2]
    broken_digest, _ = http.push_image("scan/broken", "broken", [truncated])
    skopeo.copy(good, f"docker://{scanning.registry}/scan/broken:good")

    ecr.start_image_scan(repositoryName="scan/broken", imageId={"imageTag": "broken"})
    ecr.start_image_scan(repositoryName="scan/broken", imageId={"imageTag": "good"})
    failed = wait_for_scan(ecr, "scan/broken", broken_digest)
    assert failed["imageScanStatus"]["status"] == "FAILED"
    description = failed["imageScanStatus"]["description"]
    assert description.startswith("ScanFailedError: layer sha256:") and "could not be read" in description
    fine = wait_for_scan(ecr, "scan/broken", good.digest)
    assert fine["imageScanStatus"]["status"] == "COMPLETE"
    assert fine["imageScanFindings"]["findingSeverityCounts"] == {"HIGH": 1, "MEDIUM": 1, "UNDEFINED": 1}
    # The broken image is still served as pushed, and the registry still answers.
    assert http.request("GET", f"/v2/scan/broken/manifests/{broken_digest}").status_code == 200
    assert http.request("GET", "/healthz").status_code == 200
    # Scanned images can be deleted (their scans go with them) and pushed again, unscanned.
    assert http.request("DELETE", f"/v2/scan/broken/manifests/{good.digest}").status_code == 202
    skopeo.copy(good, f"docker://{scanning.registry}/scan/broken:good")
    with pytest.raises(ClientError) as gone:
        ecr.describe_image_scan_findings(repositoryName="scan/broken", imageId={"imageTag": "good"})
    assert gone.value.response["Error"]["Code"] == "ScanNotFoundException"


def test_the_pull_gate_with_podman(
    scanning: DockyardServer, boto3_client: Boto3Clients, skopeo: Skopeo, podman: Podman, tmp_path: Path
) -> None:
    ecr = boto3_client("ecr")
    make_repository(ecr, "scan/gated")
    arn = ecr.describe_repositories(repositoryNames=["scan/gated"])["repositories"][0]["repositoryArn"]
    risky = push(skopeo, scanning, tmp_path, "scan/gated", "risky", app_layers()[1:])
    clean = push(skopeo, scanning, tmp_path, "scan/gated", "clean", [python_packages({"requests": "2.31.0"})])
    for image in (risky, clean):
        ecr.start_image_scan(repositoryName="scan/gated", imageId={"imageDigest": image.digest})
        wait_for_scan(ecr, "scan/gated", image.digest)
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "dockyard:scan-gate", "Value": "HIGH"}])

    refused = podman("pull", f"{scanning.registry}/scan/gated:risky", check=False)
    assert refused.returncode != 0
    assert "denied" in refused.stderr and "refused by the scan gate" in refused.stderr
    assert "CVE-2020-14343 (CRITICAL, PyYAML 5.3.1)" in refused.stderr
    assert "CVE-2021-33503 (HIGH, urllib3 1.26.4)" in refused.stderr
    assert f"dockyard:scan-gate-exempt/{risky.digest}" in refused.stderr
    podman("pull", f"{scanning.registry}/scan/gated:clean")  # nothing at or above HIGH

    ecr.tag_resource(resourceArn=arn, tags=[{"Key": f"dockyard:scan-gate-exempt/{risky.digest}", "Value": "accepted"}])
    podman("pull", f"{scanning.registry}/scan/gated:risky")
    ecr.untag_resource(resourceArn=arn, tagKeys=[f"dockyard:scan-gate-exempt/{risky.digest}"])
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "dockyard:scan-gate", "Value": "OFF"}])
    podman("pull", f"{scanning.registry}/scan/gated:risky")


def test_sbom_export_and_referrer_attachment(
    scanning: DockyardServer, boto3_client: Boto3Clients, skopeo: Skopeo, tmp_path: Path
) -> None:
    ecr = boto3_client("ecr")
    make_repository(ecr, "scan/sbom")
    image = push(skopeo, scanning, tmp_path, "scan/sbom", "v1", [alpine_base(), npm_app({"lodash": "4.17.20"}, {})])
    ecr.start_image_scan(repositoryName="scan/sbom", imageId={"imageTag": "v1"})
    wait_for_scan(ecr, "scan/sbom", image.digest)

    exported = json.loads(dockyard(scanning, "sbom", "export", "scan/sbom", "v1"))
    assert exported["bomFormat"] == "CycloneDX" and exported["specVersion"] == "1.6"
    assert exported["metadata"]["component"] == {
        "bom-ref": f"image:{image.digest}", "name": "scan/sbom", "type": "container", "version": image.digest,
    }  # fmt: skip
    purls = {c.get("purl") for c in exported["components"]}
    assert "pkg:apk/alpine/libssl3@3.1.0-r4?arch=x86_64&distro=alpine-3.18.4" in purls
    assert "pkg:npm/lodash@4.17.20" in purls

    artifact = dockyard(scanning, "sbom", "attach", "scan/sbom", image.digest).strip()
    http = RegistryHttp.for_server(scanning)
    referrers = http.request("GET", f"/v2/scan/sbom/referrers/{image.digest}").json()
    assert [(m["digest"], m["artifactType"]) for m in referrers["manifests"]] == [
        (artifact, "application/vnd.cyclonedx+json")
    ]
    manifest = http.request(
        "GET", f"/v2/scan/sbom/manifests/{artifact}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
    ).json()
    assert manifest["subject"]["digest"] == image.digest
    document = http.request("GET", f"/v2/scan/sbom/blobs/{manifest['layers'][0]['digest']}").json()
    assert {c.get("purl") for c in document["components"]} == purls


def test_registry_rules_leave_the_repository_scan_on_push_flag_alone(
    dockyard_server_factory: ServerFactory,
) -> None:
    """A registry rule gives a repository its scan frequency; scanOnPush stays the repository's own
    setting, in DescribeRepositories and BatchGetRepositoryScanningConfiguration alike, as in ECR."""
    ecr = Boto3Clients(dockyard_server_factory())("ecr")
    rules = [
        {"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [{"filter": "live*", "filterType": "WILDCARD"}]},
        {"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "push*", "filterType": "WILDCARD"}]},
    ]
    ecr.put_registry_scanning_configuration(scanType="BASIC", rules=rules)
    make_repository(ecr, "live-off")
    make_repository(ecr, "live-on", scan_on_push=True)
    make_repository(ecr, "push-off")
    names = ["live-off", "live-on", "push-off"]
    configs = ecr.batch_get_repository_scanning_configuration(repositoryNames=names)["scanningConfigurations"]
    assert [(c["repositoryName"], c["scanOnPush"], c["scanFrequency"]) for c in configs] == [
        ("live-off", False, "CONTINUOUS_SCAN"),
        ("live-on", True, "CONTINUOUS_SCAN"),
        ("push-off", False, "SCAN_ON_PUSH"),
    ]
    described = ecr.describe_repositories(repositoryNames=names)["repositories"]
    assert {r["repositoryName"]: r["imageScanningConfiguration"] for r in described} == {
        "live-off": {"scanOnPush": False},
        "live-on": {"scanOnPush": True},
        "push-off": {"scanOnPush": False},
    }


def test_registry_scanning_configuration_continuous_scanning_and_the_registry_gate(
    dockyard_server_factory: ServerFactory, aws: AwsCli, skopeo: Skopeo, podman: Podman, tmp_path: Path
) -> None:
    server = dockyard_server_factory(env={"DOCKYARD_SCAN_QUOTA_SECONDS": "0"})
    login(server, aws, skopeo, podman)
    ecr = Boto3Clients(server)("ecr")
    assert ecr.get_registry_scanning_configuration()["scanningConfiguration"] == {"scanType": "BASIC", "rules": []}
    rules = [
        {"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "prod-*", "filterType": "WILDCARD"}]},
        {"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [{"filter": "live", "filterType": "WILDCARD"}]},
    ]
    put = ecr.put_registry_scanning_configuration(scanType="BASIC", rules=rules)
    assert put["registryScanningConfiguration"] == {"scanType": "BASIC", "rules": rules}
    got = ecr.get_registry_scanning_configuration()
    assert got["registryId"] == server.account_id and got["scanningConfiguration"]["rules"] == rules
    for name in ("prod-api", "team/live-site", "dev"):
        ecr.create_repository(repositoryName=name)
    configs = ecr.batch_get_repository_scanning_configuration(
        repositoryNames=["prod-api", "team/live-site", "dev", "gone"]
    )
    described = [
        (c["repositoryName"], c["scanOnPush"], c["scanFrequency"], c["appliedScanFilters"])
        for c in configs["scanningConfigurations"]
    ]
    assert described == [
        ("prod-api", False, "SCAN_ON_PUSH", rules[0]["repositoryFilters"]),
        ("team/live-site", False, "CONTINUOUS_SCAN", rules[1]["repositoryFilters"]),
        ("dev", False, "MANUAL", []),
    ]  # fmt: skip
    assert [(f["repositoryName"], f["failureCode"]) for f in configs["failures"]] == [("gone", "REPOSITORY_NOT_FOUND")]

    # Only the Python advisories at first: the npm package has no known vulnerability yet.
    import_fixtures(server, OSV_FIXTURES / "PyPI")
    layers = [python_packages({"PyYAML": "5.3.1"}), npm_app({"lodash": "4.17.20"}, {})]
    pushed = {
        name: push(skopeo, server, tmp_path / name.replace("/", "-"), name, "v1", layers)
        for name in ("prod-api", "team/live-site", "dev")
    }
    for name in ("prod-api", "team/live-site"):
        found = wait_for_scan(ecr, name, pushed[name].digest)
        assert summary(found["imageScanFindings"]["findings"]) == [("CVE-2020-14343", "CRITICAL", "PyYAML", "5.3.1")]
    time.sleep(1)  # the worker has had every chance to scan what it should
    with pytest.raises(ClientError) as manual:
        ecr.describe_image_scan_findings(repositoryName="dev", imageId={"imageTag": "v1"})
    assert manual.value.response["Error"]["Code"] == "ScanNotFoundException"

    # A new advisory: continuously scanned images are matched again; the others keep their scan.
    import_fixtures(server, OSV_FIXTURES / "npm")
    deadline = time.monotonic() + SCAN_TIMEOUT
    while True:
        live = ecr.describe_image_scan_findings(repositoryName="team/live-site", imageId={"imageTag": "v1"})
        if len(live["imageScanFindings"]["findings"]) == 2:
            break
        assert time.monotonic() < deadline, live
        time.sleep(0.2)
    assert summary(live["imageScanFindings"]["findings"])[1] == ("CVE-2021-23337", "HIGH", "lodash", "4.17.20")
    prod = ecr.describe_image_scan_findings(repositoryName="prod-api", imageId={"imageTag": "v1"})
    assert len(prod["imageScanFindings"]["findings"]) == 1
    # With the quota at 0 an image may be scanned again at once, and the new scan sees lodash.
    ecr.start_image_scan(repositoryName="prod-api", imageId={"imageTag": "v1"})
    rescanned = wait_for_scan(ecr, "prod-api", pushed["prod-api"].digest)
    assert rescanned["imageScanFindings"]["findingSeverityCounts"] == {"CRITICAL": 1, "HIGH": 1}

    # The registry-level gate, and a registry-level exemption.
    dockyard(server, "gate", "set", "CRITICAL")
    refused = podman("pull", f"{server.registry}/prod-api:v1", check=False)
    assert refused.returncode != 0 and "CVE-2020-14343 (CRITICAL, PyYAML 5.3.1)" in refused.stderr
    podman("pull", f"{server.registry}/dev:v1")  # never scanned: nothing known against it
    dockyard(server, "gate", "exempt", pushed["prod-api"].digest, "--reason", "accepted risk")
    assert "accepted risk" in dockyard(server, "gate", "status")
    podman("pull", f"{server.registry}/prod-api:v1")
    dockyard(server, "gate", "set", "OFF")

    status = json.loads(dockyard(server, "vulndb", "status", "--json"))
    assert status["advisories"] == 7 and status["ecosystems"] == {"PyPI": 5, "npm": 2}
    assert len(status["imports"]) == 2


def test_vulndb_import_of_an_osv_zip_archive_shows_progress_and_status(
    scanning: DockyardServer, tmp_path: Path
) -> None:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as bundle:  # laid out as osv.dev's per-ecosystem all.zip
        for record in sorted((OSV_FIXTURES / "PyPI").glob("*.json")):
            bundle.write(record, record.name)
    before = json.loads(dockyard(scanning, "vulndb", "status", "--json"))
    done = subprocess.run(
        [*dockyard_command(), "vulndb", "import", str(archive), "--data-dir", str(scanning.data_dir)],
        capture_output=True, text=True, timeout=300, env=scanning.server_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Importing all.zip" in done.stderr  # the progress bar
    # The fixture was imported from its directory already: the same records again, stored again.
    assert done.stdout == f"{archive}: 5 advisories imported, 0 unchanged, 0 skipped\n"
    after = json.loads(dockyard(scanning, "vulndb", "status", "--json"))
    assert after["advisories"] == before["advisories"] and after["ecosystems"] == before["ecosystems"]
    assert after["imports"][0]["source"] == str(archive.resolve())
    text = dockyard(scanning, "vulndb", "status")
    assert text.startswith(f"{after['advisories']} advisories, last updated ")
    assert re.search(rf"^  PyPI +{after['ecosystems']['PyPI']} advisories +updated ", text, re.M), text


def _zero_layer(size: int) -> bytes:
    """A gzip-compressed tar holding one executable file of `size` zero bytes, built without holding
    the file in memory: big uncompressed, small on the wire."""
    info = tarfile.TarInfo("opt/data/blob.bin")
    info.size, info.mode = size, 0o755
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = [compressor.compress(info.tobuf(format=tarfile.GNU_FORMAT))]
    chunk = bytes(8 * 1024 * 1024)
    for _ in range(size // len(chunk)):
        parts.append(compressor.compress(chunk))
    parts.append(compressor.compress(bytes(-size % 512) + bytes(1024)))
    parts.append(compressor.flush())
    return b"".join(parts)


def test_the_registry_stays_responsive_while_a_1_gib_image_is_scanned(
    scanning: DockyardServer, boto3_client: Boto3Clients
) -> None:
    ecr = boto3_client("ecr")
    make_repository(ecr, "scan/big")
    http = RegistryHttp.for_server(scanning)
    digest, _ = http.push_image("scan/big", "v1", [_zero_layer(1024 * 1024 * 1024)])
    small, _ = http.push_image("scan/big", "small", [b"not scanned"])

    latencies: list[float] = []
    scanning_seen = threading.Event()
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            response = http.request("GET", f"/v2/scan/big/manifests/{small}")
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200
            time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        ecr.start_image_scan(repositoryName="scan/big", imageId={"imageDigest": digest})
        deadline = time.monotonic() + SCAN_TIMEOUT
        while True:
            status = ecr.describe_image_scan_findings(repositoryName="scan/big", imageId={"imageDigest": digest})
            if status["imageScanStatus"]["status"] != "IN_PROGRESS":
                break
            scanning_seen.set()
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        stop.set()
        prober.join()
    assert status["imageScanStatus"] == {"status": "FAILED", "description": UNSUPPORTED}
    assert scanning_seen.is_set() and len(latencies) > 10
    assert max(latencies) < 1.0, sorted(latencies)[-5:]


@pytest.fixture(autouse=True, scope="module")
def _no_leftover_gate(scanning: DockyardServer) -> Iterator[None]:
    yield
    dockyard(scanning, "gate", "set", "OFF")
