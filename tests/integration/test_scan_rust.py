"""A Rust program built with cargo-auditable, in an image pushed to a running server and scanned:
its crates.io dependencies are matched against a crates.io advisory in OSV's format."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from tests.integration.test_scanning import dockyard, summary, wait_for_scan
from tests.support.clients import Boto3Clients
from tests.support.registry_http import RegistryHttp
from tests.support.scan_images import cargo_auditable_binary
from tests.support.server import ServerFactory

# Shaped as OSV publishes GHSA-5h46-h7hh-c6x9 (RUSTSEC-2021-0078) for hyper, in crates.io/all.zip.
HYPER_ADVISORY = {
    "id": "GHSA-5h46-h7hh-c6x9",
    "modified": "2024-01-02T00:00:00Z",
    "aliases": ["CVE-2021-32714", "RUSTSEC-2021-0078"],
    "summary": "Integer overflow in hyper's parsing of the Transfer-Encoding header",
    "details": "hyper's chunked decoder could overflow when parsing chunk sizes.",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:N"}],
    "affected": [
        {
            "package": {"ecosystem": "crates.io", "name": "hyper"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.14.10"}]}],
        }
    ],
    "references": [{"type": "ADVISORY", "url": "https://nvd.nist.gov/vuln/detail/CVE-2021-32714"}],
}


def executable_layer(path: str, data: bytes) -> bytes:
    """An uncompressed layer holding one executable file, as a real image has it (mode 0755)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(path)
        info.size, info.mode = len(data), 0o755
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_cargo_auditable_binary_is_scanned_for_its_crates(
    dockyard_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = dockyard_server_factory()
    advisories = tmp_path / "crates.io"
    advisories.mkdir()
    (advisories / "GHSA-5h46-h7hh-c6x9.json").write_text(json.dumps(HYPER_ADVISORY))
    dockyard(server, "vulndb", "import", str(advisories))

    ecr = Boto3Clients(server)("ecr")
    ecr.create_repository(repositoryName="rust/hello")
    binary = cargo_auditable_binary(tmp_path / "build")
    digest, _ = RegistryHttp.for_server(server).push_image(
        "rust/hello", "v1", [executable_layer("usr/local/bin/hello", binary)]
    )
    ecr.start_image_scan(repositoryName="rust/hello", imageId={"imageTag": "v1"})
    found = wait_for_scan(ecr, "rust/hello", digest)
    assert found["imageScanStatus"] == {"status": "COMPLETE", "description": "The scan was completed successfully."}
    findings = found["imageScanFindings"]["findings"]
    assert summary(findings) == [("CVE-2021-32714", "HIGH", "hyper", "0.14.9")]
    assert findings[0]["uri"] == "https://nvd.nist.gov/vuln/detail/CVE-2021-32714"
