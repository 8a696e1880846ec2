"""realtime.ratelimit's message buckets: answered in the process, kept right across processes by Redis.

Two ``LocalBuckets`` stand for two server processes; they share only the real Redis.
"""

from __future__ import annotations

import pytest

from realtime.ratelimit import LocalBuckets


@pytest.fixture
def slow_refill(settings):
    settings.REALTIME = {**settings.REALTIME, "RATE_BURST": 4, "RATE_PER_SECOND": 0.01}


async def test_a_local_bucket_refuses_past_its_burst_with_the_wait(slow_refill):
    """Past the burst a take is refused with the seconds until the next token; other users are apart."""
    here = LocalBuckets()
    assert [here.take(1)[0] for _ in range(5)] == [True, True, True, True, False]
    allowed, wait = here.take(1)
    assert not allowed and 0 < wait <= 100
    assert here.take(2) == (True, 0.0)


async def test_two_processes_share_one_budget_after_a_sync(slow_refill):
    """What one process spent reaches the other through Redis at the next sync: together they stay
    within the burst plus what each could spend before its first sync (the documented bound)."""
    first, second = LocalBuckets(), LocalBuckets()
    assert all(first.take(7)[0] for _ in range(4))
    await first.sync()
    await second.sync()  # nothing spent here yet: nothing to push
    assert second.take(7)[0], "a process that never synced has its own burst (the bounded error)"
    await second.sync()
    assert not second.take(7)[0], "after the sync the shared bucket is empty for this process too"
    await first.sync()
    assert not first.take(7)[0]
