"""Reading layers as streams: compression by content, whiteouts across layers, links, broken layers."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zstandard

from dockyard.scanner.layers import FileView, LayerError, PathLayer, read_capped, read_layers


def tar_bytes(
    files: dict[str, bytes], links: dict[str, str] | None = None, hardlinks: dict[str, str] | None = None
) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for path, target in (links or {}).items():
            info = tarfile.TarInfo(path)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
        for path, target in (hardlinks or {}).items():
            info = tarfile.TarInfo(path)
            info.type = tarfile.LNKTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def keep_all(path: str, member: tarfile.TarInfo) -> object:
    return read_capped(1 << 20)


def write_layers(tmp_path: Path, *blobs: bytes) -> list[PathLayer]:
    layers = []
    for i, blob in enumerate(blobs):
        path = tmp_path / f"layer{i}"
        path.write_bytes(blob)
        layers.append(PathLayer(f"sha256:{i:064x}", str(path)))
    return layers


def contents(view: FileView) -> dict[str, bytes]:
    return {e.path: e.value for e in view.files()}  # type: ignore[misc]


@pytest.mark.parametrize(
    "compress",
    [lambda b: b, gzip.compress, lambda b: zstandard.ZstdCompressor().compress(b)],
    ids=["plain", "gzip", "zstd"],
)
def test_compression_is_detected_from_the_bytes(tmp_path: Path, compress: object) -> None:
    blob = compress(tar_bytes({"./etc/hostname": b"box\n", "/usr/bin/x": b"bin"}))  # type: ignore[operator]
    view = read_layers(write_layers(tmp_path, blob), keep_all)
    assert contents(view) == {"etc/hostname": b"box\n", "usr/bin/x": b"bin"}


def test_multi_frame_zstd_and_multi_member_gzip(tmp_path: Path) -> None:
    raw = tar_bytes({"a": b"1" * 5000, "b": b"2"})
    zstd = b"".join(zstandard.ZstdCompressor().compress(raw[i : i + 1024]) for i in range(0, len(raw), 1024))
    gz = b"".join(gzip.compress(raw[i : i + 1024]) for i in range(0, len(raw), 1024))
    for blob in (zstd, gz):
        assert contents(read_layers(write_layers(tmp_path, blob), keep_all)) == {"a": b"1" * 5000, "b": b"2"}


def test_whiteouts_and_opaque_directories_hide_lower_layers(tmp_path: Path) -> None:
    lower = tar_bytes(
        {
            "etc/keep": b"k",
            "etc/gone": b"g",
            "opt/app/one": b"1",
            "opt/app/sub/two": b"2",
            "srv/data/old": b"o",
            "srv/data/deep/old": b"o",
        }
    )
    upper = tar_bytes(
        {
            "etc/.wh.gone": b"",
            "opt/.wh.app": b"",
            "srv/data/.wh..wh..opq": b"",
            "srv/data/new": b"n",
            "etc/added": b"a",
        }
    )
    view = read_layers(write_layers(tmp_path, gzip.compress(lower), gzip.compress(upper)), keep_all)
    assert contents(view) == {"etc/keep": b"k", "etc/added": b"a", "srv/data/new": b"n"}
    assert view.entries["etc/keep"].layer.endswith("0")
    assert view.entries["etc/added"].layer.endswith("1")


def test_a_file_in_a_higher_layer_replaces_a_kept_one_even_if_not_kept_itself(tmp_path: Path) -> None:
    lower = tar_bytes({"var/lib/db": b"old"})
    upper = tar_bytes({"var/lib/db": b"x" * 100})
    select = lambda path, member: read_capped(10)  # noqa: E731 - the upper copy is too big to keep
    view = read_layers(write_layers(tmp_path, lower, upper), select)
    assert "var/lib/db" not in view.entries


def test_symlinks_resolve_within_the_merged_view(tmp_path: Path) -> None:
    layer = tar_bytes(
        {"usr/lib/os-release": b"ID=debian\n"},
        links={"etc/os-release": "../usr/lib/os-release", "etc/abs": "/usr/lib/os-release", "etc/loop": "loop"},
        hardlinks={"etc/hard": "usr/lib/os-release"},
    )
    view = read_layers(write_layers(tmp_path, layer), keep_all)
    for path in ("etc/os-release", "/etc/abs", "etc/hard", "usr/lib/os-release"):
        entry = view.resolve(path)
        assert entry is not None and entry.value == b"ID=debian\n", path
    assert view.resolve("etc/loop") is None
    assert view.resolve("etc/missing") is None


@pytest.mark.parametrize(
    "blob",
    [
        gzip.compress(tar_bytes({"a": b"x" * 100000}))[:-2000],  # truncated gzip stream
        tar_bytes({"a": b"x" * 100000})[:20000],  # truncated tar
        zstandard.ZstdCompressor().compress(tar_bytes({"a": b"x" * 100000}))[:-10],
        b"\x1f\x8b" + b"not gzip at all" * 10,
        b"this is not a tar archive" * 40,
    ],
    ids=["gzip-truncated", "tar-truncated", "zstd-truncated", "bad-gzip", "not-tar"],
)
def test_broken_layers_raise_layer_error_naming_the_layer(tmp_path: Path, blob: bytes) -> None:
    layers = write_layers(tmp_path, gzip.compress(tar_bytes({"ok": b"1"})), blob)
    with pytest.raises(LayerError) as raised:
        read_layers(layers, keep_all)
    assert raised.value.digest == layers[1].digest
    assert layers[1].digest in str(raised.value)


async def test_layers_without_local_files_are_read_through_their_async_streams(tmp_path: Path) -> None:
    import asyncio

    from dockyard.scanner.run import ScanFailed, inventory_in_thread

    blobs = {
        "sha256:os": gzip.compress(tar_bytes({"etc/os-release": b"ID=alpine\nVERSION_ID=3.18.4\n"})),
        "sha256:apk": zstandard.ZstdCompressor().compress(
            tar_bytes({"lib/apk/db/installed": b"P:musl\nV:1.2.4-r2\no:musl\n\nP:zlib\nV:1.2.13-r1\n"})
        ),
        "sha256:broken": gzip.compress(tar_bytes({"a": b"x" * 10000}))[:-50],
    }

    async def chunks(digest: str) -> AsyncIterator[bytes]:
        data = blobs[digest]
        for start in range(0, len(data), 7):  # tiny chunks: the bridge must reassemble them
            await asyncio.sleep(0)
            yield data[start : start + 7]

    layers = [(d, lambda d=d: chunks(d)) for d in ("sha256:os", "sha256:apk")]
    inventory = await inventory_in_thread(layers, timeout=60)
    assert inventory.os is not None and inventory.os.release == "v3.18"
    assert [(p.name, p.version) for p in inventory.packages] == [("musl", "1.2.4-r2"), ("zlib", "1.2.13-r1")]
    with pytest.raises(ScanFailed, match="layer sha256:broken could not be read"):
        await inventory_in_thread([*layers, ("sha256:broken", lambda: chunks("sha256:broken"))], 60)


async def test_a_scan_process_that_overruns_is_killed(tmp_path: Path) -> None:
    from dockyard.scanner.run import ScanFailed, inventory_in_process

    layers = write_layers(tmp_path, gzip.compress(tar_bytes({"etc/os-release": b"ID=debian\n"})))
    with pytest.raises(ScanFailed, match="did not finish within"):
        await inventory_in_process(layers, timeout=0.001)
    inventory = await inventory_in_process(layers, timeout=120)
    assert inventory.os is not None and inventory.os.id == "debian"


async def test_a_streamed_scan_that_overruns_stops_reading() -> None:
    import asyncio

    from dockyard.scanner.run import ScanFailed, inventory_in_thread

    header = tarfile.TarInfo("huge.bin")
    header.size = 10**12
    pulled = [0]

    async def endless() -> AsyncIterator[bytes]:
        yield header.tobuf(format=tarfile.GNU_FORMAT)
        while True:
            await asyncio.sleep(0.01)
            pulled[0] += 1
            yield bytes(4096)

    with pytest.raises(ScanFailed, match="did not finish within"):
        await inventory_in_thread([("sha256:endless", endless)], timeout=0.3)
    await asyncio.sleep(0.3)  # the reading thread notices the stop at its next chunk
    stopped_at = pulled[0]
    await asyncio.sleep(0.3)
    assert pulled[0] == stopped_at
