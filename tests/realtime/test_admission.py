"""Admission control (realtime/admission.py): the budget's arithmetic, and a handshake over
it answered 503 with Retry-After by a live Daphne before anything else runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from realtime import admission
from tests import services

ORIGIN_HOST = "http://127.0.0.1"


def test_bucket_admits_its_burst_then_spreads_the_refused_over_the_time_needed_to_admit_them() -> None:
    """A burst of 5 at 10/s: five admitted at once; the refused are each told a later slot,
    a tenth of a second apart (not all "come back in a second"), never beyond MAX_WAIT; the
    bucket refills at its rate."""
    bucket = admission.TokenBucket(rate=10, burst=5)
    now = bucket.stamp
    assert [bucket.take(now) for _ in range(5)] == [0.0] * 5
    waits = [bucket.take(now) for _ in range(20)]
    assert all(w > 0 for w in waits)
    assert waits == sorted(waits) and waits[-1] - waits[0] == pytest.approx(1.9, abs=0.01)
    assert bucket.take(now + 0.5) == 0.0  # half a second later: five tokens back
    many = [bucket.take(now + 0.5) for _ in range(1000)]
    assert max(many) <= admission.MAX_WAIT


def test_in_flight_holds_at_most_its_limit_and_forgets_stale_entries() -> None:
    """Two slots: a third handshake is refused until one leaves; an entry never released
    stops counting after STALE_AFTER (a lost release cannot close the door for good)."""
    gate = admission.InFlight()
    a, b = gate.enter(2), gate.enter(2)
    assert a and b and gate.enter(2) is None
    gate.leave(a)
    gate.leave(a)  # idempotent
    c = gate.enter(2)
    assert c is not None and gate.enter(2) is None
    gate.started = dict.fromkeys(gate.started, 0.0)  # both started long ago
    assert gate.enter(2) is not None


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    """Retry-After carries delay-seconds (RFC 9110): rounded up, never 0."""
    assert [admission.retry_after_seconds(w) for w in (0.01, 1.0, 1.2, 29.5)] == [1, 1, 2, 30]


@pytest.fixture(scope="module")
def busy_daphne(app_env: dict[str, str]) -> Any:
    """A Daphne whose budget is two handshakes per second, both at once at most."""
    env = {**app_env, "WS_ADMISSION_HANDSHAKES_PER_SECOND": "2", "WS_ADMISSION_HANDSHAKES_BURST": "2"}
    service = services.daphne_service(env).start()
    yield service
    service.stop()


@pytest.mark.live
def test_a_handshake_over_the_budget_gets_503_with_retry_after_and_nothing_else(busy_daphne: Any) -> None:
    """Within the budget a handshake reaches authentication (403: no credentials); above it
    the answer is 503 with a Retry-After of whole seconds, before Origin or authentication
    ran; the later refusals are told to wait longer (spread, not a herd)."""
    url = f"{busy_daphne.ws_url}/ws/chat/"

    async def statuses() -> list[tuple[int, str | None]]:
        found = []
        for _ in range(6):
            try:
                async with connect(url, origin=f"{ORIGIN_HOST}:{busy_daphne.port}", open_timeout=20):
                    found.append((101, None))
            except InvalidStatus as exc:
                found.append((exc.response.status_code, exc.response.headers.get("Retry-After")))
        return found

    found = asyncio.run(statuses())
    assert found[0] == (403, None)  # admitted: refused by authentication, as without a budget
    refused = [retry for status, retry in found if status == 503]
    assert len(refused) >= 3, found
    assert all(status in (403, 503) for status, _ in found), found
    assert all(retry is not None and retry.isdigit() and int(retry) >= 1 for retry in refused), found
    assert int(refused[-1]) >= int(refused[0])
