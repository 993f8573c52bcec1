"""Maven (jars, wars, nested jars), RubyGems, Packagist and Rust (cargo-auditable) inventories;
matching each against an OSV-shaped advisory; version ordering of Maven, RubyGems, Packagist and
crates.io; damaged input."""

from __future__ import annotations

import io
import random
import zipfile
import zlib
from pathlib import Path

import pytest

from dockyard.scanner import cargo, java
from dockyard.scanner.inventory import Package
from dockyard.scanner.matching import match
from dockyard.scanner.versions import in_range, parse, parser_for
from tests.support.scan_images import (
    advisories,
    cargo_auditable_binary,
    composer_installed,
    debian_base,
    debian_jar,
    gem_specification,
    web_archive,
    zip_of,
)
from tests.unit.test_scanner_inventory import layer, scan


def maven(packages: list[Package]) -> set[tuple[str, str, str]]:
    return {(p.name, p.version, p.path) for p in packages if p.ecosystem == "Maven"}


def test_debian_jars_and_a_war_nesting_them(tmp_path: Path) -> None:
    commons_io, guava = debian_jar("commons-io"), debian_jar("guava")
    boot = zip_of({"BOOT-INF/lib/shop.war": web_archive({"commons-lang3.jar": debian_jar("commons-lang3")})})
    files = {
        "usr/share/java/commons-io-2.11.0.jar": commons_io,
        "srv/shop.war": web_archive({"commons-io-2.11.0.jar": commons_io, "guava-31.1-jre.jar": guava}),
        "srv/boot.jar": boot,
    }
    inventory = scan(tmp_path, layer(tmp_path, "java", debian_base() | files))
    assert maven(inventory.packages) == {
        ("commons-io:commons-io", "2.11.0", "/usr/share/java/commons-io-2.11.0.jar"),
        ("com.example:shop", "1.4.0", "/srv/shop.war"),
        ("commons-io:commons-io", "2.11.0", "/srv/shop.war!/WEB-INF/lib/commons-io-2.11.0.jar"),
        ("com.google.guava:guava", "31.1-jre", "/srv/shop.war!/WEB-INF/lib/guava-31.1-jre.jar"),
        ("com.example:shop", "1.4.0", "/srv/boot.jar!/BOOT-INF/lib/shop.war"),
        (
            "org.apache.commons:commons-lang3",
            "3.12.0",
            "/srv/boot.jar!/BOOT-INF/lib/shop.war!/WEB-INF/lib/commons-lang3.jar",
        ),
    }
    guava_package = next(p for p in inventory.packages if p.name == "com.google.guava:guava")
    assert guava_package.purl(inventory.os) == "pkg:maven/com.google.guava/guava@31.1-jre"
    assert inventory.notes == []


def test_maven_advisories_match_with_mavens_ordering(tmp_path: Path) -> None:
    inventory = scan(tmp_path, layer(tmp_path, "java", {"app/guava.jar": debian_jar("guava")}))
    # As GHSA-7g45-4rm6-3mm3 (CVE-2023-2976) gives it: fixed in 32.0.0-android.
    affecting = [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "32.0.0-android"}]}]
    not_affecting = [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "31.1-android"}]}]
    findings = match(inventory, advisories("com.google.guava:guava", "Maven", affecting, not_affecting), {})
    assert [(f.name, f.package_name, f.package_version) for f in findings] == [
        ("CVE-2023-0001", "com.google.guava:guava", "31.1-jre")
    ]


def test_ruby_gems(tmp_path: Path) -> None:
    files = dict([gem_specification("rake", "12.3.2"), gem_specification("json", "2.6.1", default=True)])
    inventory = scan(tmp_path, layer(tmp_path, "ruby", files))
    gems = {(p.name, p.version, p.ecosystem) for p in inventory.packages}
    assert gems == {("rake", "12.3.2", "RubyGems"), ("json", "2.6.1", "RubyGems")}
    rake = next(p for p in inventory.packages if p.name == "rake")
    assert rake.purl(inventory.os) == "pkg:gem/rake@12.3.2"
    # As CVE-2020-8130's GHSA record gives it: fixed in 12.3.3.
    affecting = [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "12.3.3"}]}]
    not_affecting = [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "12.3.2.pre"}]}]
    findings = match(inventory, advisories("rake", "RubyGems", affecting, not_affecting), {})
    assert [(f.name, f.package_version) for f in findings] == [("CVE-2023-0001", "12.3.2")]


@pytest.mark.parametrize("composer_version", [1, 2])
def test_composer_installed_json(tmp_path: Path, composer_version: int) -> None:
    installed = composer_installed({"guzzlehttp/guzzle": "7.4.4", "symfony/http-kernel": "v5.4.19"}, composer_version)
    inventory = scan(tmp_path, layer(tmp_path, "php", {"var/www/vendor/composer/installed.json": installed}))
    found = {(p.name, p.version, p.ecosystem) for p in inventory.packages}
    assert found == {("guzzlehttp/guzzle", "7.4.4", "Packagist"), ("symfony/http-kernel", "v5.4.19", "Packagist")}
    kernel = next(p for p in inventory.packages if p.name == "symfony/http-kernel")
    assert kernel.purl(inventory.os) == "pkg:composer/symfony/http-kernel@v5.4.19"
    affecting = [{"type": "ECOSYSTEM", "events": [{"introduced": "5.0.0"}, {"fixed": "5.4.20"}]}]
    not_affecting = [{"type": "ECOSYSTEM", "events": [{"introduced": "5.0.0"}, {"fixed": "5.4.19-RC1"}]}]
    findings = match(inventory, advisories("symfony/http-kernel", "Packagist", affecting, not_affecting), {})
    assert [(f.name, f.package_version) for f in findings] == [("CVE-2023-0001", "v5.4.19")]


# Each pair in ascending order; "=" marks equal versions.
ORDERINGS = {
    # Maven's ComparableVersion, the examples its documentation gives.
    "Maven": [
        ("1-alpha", "1-beta"), ("1-beta", "1-milestone"), ("1-milestone", "1-rc"), ("1-rc", "1-SNAPSHOT"),
        ("1-SNAPSHOT", "1"), ("1", "1-sp"), ("1-sp", "1.1"), ("1-1", "1.1"), ("1.0-alpha-1", "1.0"),
        ("31.1-jre", "32.0.0-android"), ("2.0.0.M1", "2.0.0"), ("1", "=1.0.0"), ("1", "=1-ga"),
        ("1", "=1-final"), ("1-cr", "=1-rc"), ("1.0-a1", "=1.0-alpha-1"),
    ],
    "RubyGems": [("1.0.a", "1.0"), ("1.0.0.pre", "1.0.0"), ("1.9", "1.10"), ("1.0.0.rc1", "1.0.0.rc2"),
                 ("1.0", "=1.0.0")],
    # Composer: dev < alpha < beta < RC < stable < patch; a leading "v" is ignored.
    "Packagist": [
        ("1.0.0-dev", "1.0.0-alpha"), ("1.0.0-alpha", "1.0.0-beta"), ("1.0.0-beta", "1.0.0-RC1"),
        ("1.0.0-RC2", "1.0.0-RC10"), ("1.0.0-RC1", "1.0.0"), ("1.0.0", "1.0.0-p1"), ("1.0.0-patch1", "1.0.1"),
        ("v5.4.19", "5.4.20"), ("v1.2", "=1.2"), ("1.0", "=1.0.0.0"),
    ],
    # Semantic Versioning 2.0.0's own precedence example.
    "crates.io": [
        ("1.0.0-alpha", "1.0.0-alpha.1"), ("1.0.0-alpha.1", "1.0.0-alpha.beta"), ("1.0.0-alpha.beta", "1.0.0-beta"),
        ("1.0.0-beta", "1.0.0-beta.2"), ("1.0.0-beta.2", "1.0.0-beta.11"), ("1.0.0-beta.11", "1.0.0-rc.1"),
        ("1.0.0-rc.1", "1.0.0"), ("0.9.10", "0.10.0"),
    ],
}  # fmt: skip


@pytest.mark.parametrize("ecosystem", list(ORDERINGS))
def test_version_ordering(ecosystem: str) -> None:
    parser = parser_for(ecosystem)
    assert parser is not None
    for low, high in ORDERINGS[ecosystem]:
        a, b = parse(parser, low), parse(parser, high.removeprefix("="))
        assert a is not None and b is not None, (low, high)
        if high.startswith("="):
            assert a == b and not a < b and not b < a, (low, high)
        else:
            assert a < b and not b < a, (low, high)
    # And through an OSV range, as matching reads it.
    low, high = ORDERINGS[ecosystem][0]
    events = [{"introduced": "0"}, {"fixed": high.removeprefix("=")}]
    assert in_range(low, ecosystem, "ECOSYSTEM", events) is True
    assert in_range(high.removeprefix("="), ecosystem, "ECOSYSTEM", events) is False


def test_composer_branches_are_not_ordered() -> None:
    assert in_range("dev-main", "Packagist", "ECOSYSTEM", [{"introduced": "0"}, {"fixed": "1.0"}]) is None


def _mangle(data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    if seed % 2:
        return bytes(out[: rng.randrange(len(out))])
    for _ in range(rng.randint(1, 32)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def test_damaged_archives_are_notes(tmp_path: Path) -> None:
    war = web_archive({"commons-io.jar": debian_jar("commons-io")})
    for seed in range(200):
        result = java.read_java_archive(io.BytesIO(_mangle(war, seed)))
        assert isinstance(result, java.JavaArchive)
    broken = {
        "srv/broken.jar": b"PK\x03\x04 not really a zip",
        "srv/nested.war": zip_of({"WEB-INF/lib/bad.jar": b"garbage"}),
        "usr/lib/ruby/gems/3.1.0/specifications/odd-1.gemspec": b"Gem::Specification.new do |s|\nend\n",
        "app/vendor/composer/installed.json": b"{not json",
    }
    inventory = scan(tmp_path, layer(tmp_path, "broken", broken))
    assert inventory.packages == []
    assert inventory.notes == [
        "/srv/broken.jar: archive: unreadable (File is not a zip file)",
        "/srv/nested.war: WEB-INF/lib/bad.jar: unreadable (File is not a zip file)",
        "/usr/lib/ruby/gems/3.1.0/specifications/odd-1.gemspec: no gem name and version found",
        "/app/vendor/composer/installed.json: not a Composer installed.json",
    ]


def test_archive_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    jar = debian_jar("commons-io")
    monkeypatch.setattr(java, "MAX_NESTED_SIZE", len(jar) - 1)
    result = java.read_java_archive(io.BytesIO(web_archive({"commons-io.jar": jar})))
    assert [a.artifact_id for a in result.artifacts] == ["shop"]
    assert result.notes == (f"WEB-INF/lib/commons-io.jar: nested archive larger than {len(jar) - 1} bytes, not read",)
    # An archive nested in itself over and over stops at the depth bound.
    nested = jar
    for _ in range(java.MAX_DEPTH + 2):
        nested = zip_of({"lib/inner.jar": nested})
    monkeypatch.setattr(java, "MAX_NESTED_SIZE", 64 * 1024 * 1024)
    deep = java.read_java_archive(io.BytesIO(nested))
    assert deep.artifacts == () and len(deep.notes) == 1 and "nested too deep" in deep.notes[0]
    monkeypatch.setattr(java, "MAX_ARCHIVE_SIZE", 10)
    assert java.read_java_archive(io.BytesIO(jar)).notes == ("archive larger than 10 bytes, not read",)
    assert zipfile.is_zipfile(io.BytesIO(jar))


def test_rust_crates_from_a_cargo_auditable_binary(tmp_path: Path) -> None:
    binary = cargo_auditable_binary(tmp_path / "build")
    inventory = scan(tmp_path, layer(tmp_path, "rust", {"usr/local/bin/hello": binary}, {"usr/local/bin/hello": 0o755}))
    crates = {(p.name, p.version, p.ecosystem, p.path) for p in inventory.packages}
    # Only crates.io's crates: not the program itself ("local"), nor a git dependency.
    assert crates == {
        ("hyper", "0.14.9", "crates.io", "/usr/local/bin/hello"),
        ("smallvec", "1.6.0", "crates.io", "/usr/local/bin/hello"),
        ("cc", "1.0.79", "crates.io", "/usr/local/bin/hello"),
    }
    hyper = next(p for p in inventory.packages if p.name == "hyper")
    assert hyper.purl(inventory.os) == "pkg:cargo/hyper@0.14.9"
    # As GHSA-5h46-h7hh-c6x9 (CVE-2021-32714) gives it: fixed in 0.14.10; SemVer, so 0.14.9 < 0.14.10.
    affecting = [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.14.10"}]}]
    not_affecting = [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.14.9-rc.1"}]}]
    findings = match(inventory, advisories("hyper", "crates.io", affecting, not_affecting), {})
    assert [(f.name, f.package_name, f.package_version) for f in findings] == [("CVE-2023-0001", "hyper", "0.14.9")]


def test_damaged_cargo_auditable_binaries_read_as_no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = cargo_auditable_binary(tmp_path / "good")
    assert cargo.read_audit_data(io.BytesIO(binary)) is not None
    for section in (b"not zlib", zlib.compress(b"not json"), zlib.compress(b'{"packages": 3}')):
        assert cargo.read_audit_data(io.BytesIO(cargo_auditable_binary(tmp_path / "bad", section=section))) is None
    # Too large once inflated: refused without inflating it all.
    monkeypatch.setattr(cargo, "MAX_JSON", 1024)
    big = [{"name": f"crate-{n}", "version": "1.0.0", "source": "crates.io"} for n in range(200)]
    assert cargo.read_audit_data(io.BytesIO(cargo_auditable_binary(tmp_path / "big", big))) is None
    monkeypatch.undo()
    # A section table that does not fit the file, truncated files, and bytes flipped anywhere in
    # the headers and the section table: no data, and no error or hang.
    header = bytearray(binary)
    header[0x3C:0x3E] = (0xFFFF).to_bytes(2, "little")  # e_shnum
    assert cargo.read_audit_data(io.BytesIO(bytes(header))) is None
    for cut in (16, 64, len(binary) // 2, len(binary) - 1):
        assert cargo.read_audit_data(io.BytesIO(binary[:cut])) is None
    shoff = int.from_bytes(binary[0x28:0x30], "little")
    rng = random.Random(7)
    for _ in range(300):
        damaged = bytearray(binary)
        for _ in range(rng.randint(1, 8)):
            where = rng.choice([rng.randrange(64), rng.randrange(shoff, len(binary))])
            damaged[where] = rng.randrange(256)
        found = cargo.read_audit_data(io.BytesIO(bytes(damaged)))
        assert found is None or isinstance(found, cargo.CargoAudit)
