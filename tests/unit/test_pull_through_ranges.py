"""The pull through cache's byte ranges of a blob still arriving, and how an ECR upstream URL
finds the Dockyard site that serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.config import Settings
from dockyard.core.registry.pull_through import byte_range
from dockyard.core.registry.pull_through_ecr import site_upstream
from dockyard.core.remote_sites import SiteCredentialsMissing


async def _chunks(data: bytes, sizes: list[int], read: list[int]) -> AsyncIterator[bytes]:
    offset = 0
    for size in [*sizes, len(data)]:
        piece = data[offset : offset + size]
        if not piece:
            break
        offset += len(piece)
        read[0] = offset
        yield piece


@settings(suppress_health_check=list(HealthCheck), deadline=None)
@given(
    data=st.binary(min_size=1, max_size=300),
    sizes=st.lists(st.integers(1, 64), max_size=10),
    bounds=st.tuples(st.integers(0, 299), st.integers(0, 299)),
)
async def test_a_range_is_cut_from_the_chunks_and_reads_no_further_than_it_needs(
    data: bytes, sizes: list[int], bounds: tuple[int, int]
) -> None:
    first = min(bounds[0], len(data) - 1)
    end = min(max(bounds[1], first) + 1, len(data))
    read = [0]
    got = b"".join([chunk async for chunk in byte_range(_chunks(data, sizes, read), first, end)])
    assert got == data[first:end]
    # The chunk holding the range's last byte is the last one read.
    assert read[0] - end < max([*sizes, len(data)])


def test_an_ecr_upstream_finds_the_site_of_its_region() -> None:
    configured = Settings(
        replication_sites={"us-west-2": "https://west.example/", "eu-west-1": "https://eu.example"},
        replication_site_credentials={"us-west-2": "AKIAEXAMPLE:secret"},
    )
    found = site_upstream(configured, "210987654321.dkr.ecr.us-west-2.amazonaws.com", None)
    assert found is not None
    assert (found.site.url, found.host) == ("https://west.example", "210987654321.dkr.ecr.us-west-2.amazonaws.com")
    assert (found.site.access_key_id, found.site.secret_access_key) == ("AKIAEXAMPLE", "secret")
    assert site_upstream(configured, "210987654321.dkr.ecr.ap-south-1.amazonaws.com", None) is None
    assert site_upstream(configured, "quay.io", None) is None
    with pytest.raises(SiteCredentialsMissing):
        site_upstream(configured, "210987654321.dkr.ecr.eu-west-1.amazonaws.com", None)
