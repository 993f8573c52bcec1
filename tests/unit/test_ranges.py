"""doors.ranges: the one reading of a blob GET's Range header both doors share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.doors.ranges import ByteRange, RangeNotSatisfiable, requested_range


@pytest.mark.parametrize(
    ("value", "window"),
    [
        (None, None),
        ("bytes=0-0", ByteRange(0, 0, 100)),
        ("bytes=10-19", ByteRange(10, 19, 100)),
        (" bytes=90- ", ByteRange(90, 99, 100)),
        ("bytes=-10", ByteRange(90, 99, 100)),
        ("bytes=-1000", ByteRange(0, 99, 100)),
        ("bytes=50-1000", ByteRange(50, 99, 100)),
        # Not served here, so the whole blob: several ranges, other units, nonsense.
        ("bytes=0-1,5-9", None),
        ("items=0-10", None),
        ("bytes=-", None),
        ("bytes=x-y", None),
    ],
)
def test_a_range_is_read(value: str | None, window: ByteRange | None) -> None:
    assert requested_range(value, 100) == window


@pytest.mark.parametrize(
    ("value", "size"), [("bytes=100-", 100), ("bytes=5-4", 100), ("bytes=-0", 100), ("bytes=-5", 0)]
)
def test_an_unsatisfiable_range_names_the_size(value: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as refused:
        requested_range(value, size)
    assert refused.value.headers == {"Content-Range": f"bytes */{size}"}
    assert str(refused.value) == f"the range {value!r} is not satisfiable: the blob has {size} bytes"


def test_a_window_carries_its_response_headers() -> None:
    window = ByteRange(10, 19, 100)
    assert window.end == 20
    assert window.headers == {"Content-Range": "bytes 10-19/100", "Content-Length": "10"}


@given(size=st.integers(1, 10_000), first=st.integers(0, 20_000), length=st.integers(0, 20_000))
def test_a_satisfiable_window_lies_within_the_blob(size: int, first: int, length: int) -> None:
    value = f"bytes={first}-{first + length}"
    if first >= size:
        with pytest.raises(RangeNotSatisfiable):
            requested_range(value, size)
        return
    window = requested_range(value, size)
    assert window == ByteRange(first, min(first + length, size - 1), size)
