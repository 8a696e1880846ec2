"""GET /metrics: closed to strangers, and its numbers follow what sockets really do.

Consumers run through the full ASGI stack (``WebsocketCommunicator``) on the real Redis,
in this process, so the per-process metrics read here are the ones they moved. Every
number is read back from the exposition itself, parsed by ``prometheus_client.parser``.
The push histogram lives in Redis (Celery children serve no HTTP): a push from another
process must show up in this one's /metrics, and a Redis outage must hide only it.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from realtime import broadcast, metrics, push
from realtime.asgi import application
from tests.conftest import cookie_header
from tests.services import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")
STRANGER = "203.0.113.7"
PUSH = "realtime_push_latency_seconds"


def scrape(**extra: Any):
    return Client().get("/metrics", **extra)


def samples(text: str, name: str, **labels: str) -> list[Sample]:
    """The samples called ``name`` whose labels include ``labels``."""
    return [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(text: str, name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    found = samples(text, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0].value


def now(name: str, **labels: str) -> float:
    """The current value of a series of this process, as /metrics reports it."""
    return value(metrics.exposition().decode(), name, **labels)


# --- Access --------------------------------------------------------------------------


def test_metrics_are_refused_to_strangers_and_served_with_the_token(settings):
    """Without the token a non-allowed address gets 403 and no numbers; the right bearer token gets the metrics."""
    settings.METRICS_TOKEN = "t0k3n-for-tests"
    settings.METRICS_ALLOW_IPS = ["127.0.0.1", "::1"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic t0k3n-for-tests"}):
        refused = scrape(REMOTE_ADDR=STRANGER, headers=headers)
        assert refused.status_code == 403
        assert b"realtime_" not in refused.content
    allowed = scrape(REMOTE_ADDR=STRANGER, headers={"Authorization": "Bearer t0k3n-for-tests"})
    assert allowed.status_code == 200
    assert allowed["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4 == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f.type for f in text_string_to_metric_families(allowed.content.decode())}
    assert families["realtime_active_connections"] == "gauge"
    assert "no-cache" in allowed["Cache-Control"] or "max-age=0" in allowed["Cache-Control"]


def test_the_peer_token_reads_metrics_and_an_empty_one_reads_nothing(settings):
    """realtime.web's children read each other's metrics with WEB_PEER_TOKEN; when it is unset, no bearer
    matches it."""
    settings.METRICS_TOKEN = ""
    settings.WEB_PEER_TOKEN = ""
    assert scrape(REMOTE_ADDR=STRANGER, headers={"Authorization": "Bearer "}).status_code == 403
    settings.WEB_PEER_TOKEN = "peer-secret"
    assert scrape(REMOTE_ADDR=STRANGER, headers={"Authorization": "Bearer peer-secret"}).status_code == 200
    assert scrape(REMOTE_ADDR=STRANGER, headers={"Authorization": "Bearer other"}).status_code == 403


def test_merged_expositions_keep_each_family_once_and_each_series_once(monkeypatch):
    """Two processes' expositions merge into one valid exposition: every family once, both processes' series,
    and a series both report (the region's push histogram) once."""
    monkeypatch.setenv("METRICS_PROCESS", "host:1")
    one = metrics.exposition(siblings=False).decode()
    monkeypatch.setenv("METRICS_PROCESS", "host:2")
    two = metrics.exposition(siblings=False).decode()
    merged = metrics.merged_exposition([one, two]).decode()
    families = list(text_string_to_metric_families(merged))
    assert len({f.name for f in families}) == len(families)
    by_name = {f.name: f for f in families}
    active = by_name["realtime_active_connections"]
    assert {s.labels["process"] for s in active.samples} == {"host:1", "host:2"}
    samples = [(s.name, tuple(sorted(s.labels.items()))) for f in families for s in f.samples]
    assert len(samples) == len(set(samples))
    # One text merges to what it was.
    assert metrics.merged_exposition([one]).decode() == one


def test_metrics_allow_listed_addresses_and_networks(settings):
    """Loopback (also IPv4-mapped) is allowed by default; networks work; an empty list leaves the token only."""
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOW_IPS = ["127.0.0.1", "::1"]
    assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 200
    assert scrape(REMOTE_ADDR="::ffff:127.0.0.1").status_code == 200
    assert scrape(REMOTE_ADDR="::1").status_code == 200
    # No token configured: an empty bearer must not match it.
    assert scrape(REMOTE_ADDR=STRANGER, headers={"Authorization": "Bearer "}).status_code == 403
    settings.METRICS_ALLOW_IPS = ["10.0.0.0/8"]
    assert scrape(REMOTE_ADDR="10.20.30.40").status_code == 200
    assert scrape(REMOTE_ADDR="11.0.0.1").status_code == 403
    settings.METRICS_ALLOW_IPS = []
    assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 403


@pytest.mark.live
def test_live_daphne_serves_metrics_to_loopback(daphne):
    """Under Daphne the endpoint answers the loopback scrape with that process's labelled series."""
    with urllib.request.urlopen(f"{daphne.url}/metrics", timeout=10) as response:
        body = response.read().decode()
    (gauge,) = samples(body, "realtime_active_connections")
    assert gauge.labels["region"] == "local" and gauge.labels["process"] != metrics.process_label()
    assert gauge.value >= 0


# --- Labels and format ----------------------------------------------------------------


def test_every_series_carries_region_and_process_and_the_push_histogram_region_only(monkeypatch):
    """Each series of this process has ``region`` and ``process``; the Redis-kept push series have ``region`` only."""
    monkeypatch.setenv("METRICS_PROCESS", "web-7")
    push.push_everyone({"type": "announcement", "body": "x"})
    families = list(text_string_to_metric_families(metrics.exposition().decode()))
    reported = {f.name for f in families}
    assert {f.name for f in metrics.PROCESS_REGISTRY.collect()} | {PUSH} <= reported
    for family in families:
        assert family.samples, family.name  # every family is reported from the start
        for sample in family.samples:
            assert sample.labels["region"] == "local", sample
            if family.name == PUSH:
                assert "process" not in sample.labels, sample
            else:
                assert sample.labels["process"] == "web-7", sample


def test_exposition_parses_with_cumulative_buckets_and_escaped_labels(monkeypatch):
    """The parser reads the whole exposition; buckets never decrease and +Inf equals the count; label values
    with quotes and backslashes come back intact."""
    monkeypatch.setenv("METRICS_PROCESS", 'web"1\\a')
    metrics.ping_rtt_observe(80)
    metrics.ping_rtt_observe(400)
    body = metrics.exposition().decode()
    assert 'process="web\\"1\\\\a"' in body
    buckets = samples(body, "realtime_ping_rtt_seconds_bucket", process='web"1\\a')
    assert [float(s.labels["le"]) for s in buckets] == sorted(float(s.labels["le"]) for s in buckets)
    assert buckets[-1].labels["le"] == "+Inf"
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)
    assert counts[-1] == value(body, "realtime_ping_rtt_seconds_count") >= 2


# --- What sockets do ------------------------------------------------------------------


class Recorder:
    """A communicator that keeps every event it received."""

    def __init__(self, comm: WebsocketCommunicator) -> None:
        self.comm = comm
        self.events: list[dict[str, Any]] = []

    async def next(self, type_: str, timeout: float = 5) -> dict[str, Any]:
        while True:
            event = await self.comm.receive_json_from(timeout=timeout)
            self.events.append(event)
            if event["type"] == type_:
                return event

    async def drain(self) -> None:
        while not await self.comm.receive_nothing(timeout=0.3):
            self.events.append(await self.comm.receive_json_from())


async def open_socket(user: Any) -> Recorder:
    cookie = await sync_to_async(cookie_header)(user)
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie.encode())])
    connected, _ = await comm.connect(timeout=5)
    assert connected
    rec = Recorder(comm)
    await rec.next("hello")
    return rec


async def test_a_socket_session_moves_the_gauge_and_the_counters(alice, bob, lobby):
    """Open sockets count up and back down; frames in and events out match what the clients did and got."""
    conns, frames_in, events_out = (
        now("realtime_active_connections"), now("realtime_messages_in_total"), now("realtime_messages_out_total")
    )
    fanout, rtt = now("realtime_fanout_latency_seconds_count"), now("realtime_ping_rtt_seconds_count")
    rtt_sum = now("realtime_ping_rtt_seconds_sum")

    a = await open_socket(alice)
    assert now("realtime_active_connections") == conns + 1
    b = await open_socket(bob)
    assert now("realtime_active_connections") == conns + 2

    for rec in (a, b):
        await rec.comm.send_json_to({"type": "join", "room": "lobby"})
        await rec.next("joined")
    await a.comm.send_json_to({"type": "message", "room": "lobby", "body": "hello", "client_id": "m1"})
    await a.next("message")
    await b.next("message")
    await a.comm.send_json_to({"type": "ping", "t": 1, "rtt": 42})
    await a.next("pong")
    await a.drain()
    await b.drain()

    # The endpoint reports what the exposition does.
    body = (await sync_to_async(scrape)()).content.decode()
    assert value(body, "realtime_active_connections", region="local") == conns + 2

    assert now("realtime_messages_in_total") - frames_in == 4  # two joins, a message, a ping
    assert now("realtime_messages_out_total") - events_out == len(a.events) + len(b.events)
    # The message to both sockets at least (bob's presence reached alice too), each stamped at publish.
    assert now("realtime_fanout_latency_seconds_count") - fanout >= 2
    assert now("realtime_ping_rtt_seconds_count") - rtt == 1
    assert math.isclose(now("realtime_ping_rtt_seconds_sum") - rtt_sum, 0.042)

    await a.comm.disconnect(timeout=5)
    await b.comm.disconnect(timeout=5)
    assert now("realtime_active_connections") == conns


async def test_a_refused_handshake_is_not_an_open_socket(alice):
    """A socket refused before accept (forged Origin) never counts as open."""
    conns = now("realtime_active_connections")
    cookie = await sync_to_async(cookie_header)(alice)
    comm = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"origin", b"https://evil.example"), (b"cookie", cookie.encode())]
    )
    connected, _ = await comm.connect(timeout=5)
    assert not connected
    assert now("realtime_active_connections") == conns


def test_ping_rtt_and_fanout_ignore_values_that_are_not_measurements():
    """Negative, huge, non-numeric or boolean rtt values are not observed; a future publish time counts as 0 s."""
    rtt = now("realtime_ping_rtt_seconds_count")
    for bad in (-1, 10**9, "42", True, None, math.nan, math.inf):
        metrics.ping_rtt_observe(bad)
    assert now("realtime_ping_rtt_seconds_count") == rtt
    fanout = now("realtime_fanout_latency_seconds_count")
    for bad in ("now", None, False, math.nan):
        metrics.fanout_observe(bad)
    assert now("realtime_fanout_latency_seconds_count") == fanout
    zero = now("realtime_fanout_latency_seconds_bucket", le="0.0005")
    metrics.fanout_observe(time.time() + 30)  # another host's clock ahead of ours
    assert now("realtime_fanout_latency_seconds_bucket", le="0.0005") == zero + 1


async def test_a_broadcast_of_unknown_type_is_dropped_and_counted(alice):
    """A message on a socket's topic that is neither an event nor a control reaches no client and counts as
    ``realtime_broadcast_dropped_total{reason="unknown_type"}``."""
    dropped = now("realtime_broadcast_dropped_total", reason="unknown_type")
    a = await open_socket(alice)
    await broadcast.apublish(broadcast.user_group(alice.pk), {"type": "no.such.type", "n": 1})
    deadline = time.monotonic() + 5
    while now("realtime_broadcast_dropped_total", reason="unknown_type") == dropped and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert now("realtime_broadcast_dropped_total", reason="unknown_type") == dropped + 1
    assert await a.comm.receive_nothing(timeout=0.3)
    await a.comm.disconnect(timeout=5)


async def test_a_socket_refused_for_a_redis_outage_counts_a_connect_error(alice, monkeypatch):
    """With Redis unreachable the handshake is refused, no socket counts as open, and
    ``realtime_redis_errors_total{op="connect"}`` goes up by one."""
    import redis.asyncio as aioredis

    import realtime.redis_pool as redis_pool
    from tests.services import free_port

    errors, conns = now("realtime_redis_errors_total", op="connect"), now("realtime_active_connections")
    cookie = await sync_to_async(cookie_header)(alice)
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
    monkeypatch.setitem(redis_pool._async_clients, asyncio.get_running_loop(), dead)
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie.encode())])
    connected, _ = await comm.connect(timeout=5)
    assert not connected
    assert now("realtime_redis_errors_total", op="connect") == errors + 1
    assert now("realtime_active_connections") == conns
    await dead.aclose()


# --- The push histogram, kept in Redis ------------------------------------------------------


def test_push_latency_from_another_process_reaches_this_ones_metrics():
    """A sync push in a separate process (as in a Celery child) is timed into Redis and reported here, per audience."""
    code = (
        "from realtime import push; "
        "push.push_room('lobby', {'type': 'announcement', 'body': 'x'}); "
        "push.push_user(1, {'type': 'mention', 'body': 'y'})"
    )
    run = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    push.push_everyone({"type": "announcement", "body": "z"})

    body = metrics.exposition().decode()
    for audience in ("room", "user", "everyone"):
        assert value(body, f"{PUSH}_count", audience=audience, region="local") == 1
        assert value(body, f"{PUSH}_bucket", audience=audience, le="+Inf") == 1
        assert 0 < value(body, f"{PUSH}_sum", audience=audience) < 10


def test_the_push_histogram_reports_only_this_regions_series(settings):
    """Pushes timed in another region share the Redis keyspace only by accident; each region reports its own."""
    settings.REGION = "eu-west"
    metrics.PUSH_LATENCY.observe(0.003, audience="room")
    metrics.PUSH_LATENCY.observe(0.2, audience="room")
    settings.REGION = "local"
    metrics.PUSH_LATENCY.observe(0.004, audience="room")
    body = metrics.exposition().decode()
    assert not samples(body, f"{PUSH}_count", region="eu-west")
    assert value(body, f"{PUSH}_count", audience="room") == 1
    assert value(body, f"{PUSH}_bucket", audience="room", le="0.0025") == 0
    assert value(body, f"{PUSH}_bucket", audience="room", le="0.005") == 1
    settings.REGION = "eu-west"
    body = metrics.exposition().decode()
    assert value(body, f"{PUSH}_count", audience="room", region="eu-west") == 2
    assert value(body, f"{PUSH}_bucket", audience="room", le="0.1") == 1
    assert math.isclose(value(body, f"{PUSH}_sum", audience="room"), 0.203)


def test_metrics_are_served_while_redis_is_down(monkeypatch):
    """A Redis outage during the scrape hides only the Redis-kept push series; the per-process metrics and the
    push family's header are still served, and the push series return with Redis."""
    import redis

    import realtime.redis_pool as redis_pool
    from tests.services import free_port

    push.push_everyone({"type": "announcement", "body": "before the outage"})
    assert value(metrics.exposition().decode(), f"{PUSH}_count", audience="everyone") == 1

    # The process's Redis client, pointed at a port where nothing listens.
    monkeypatch.setattr(redis_pool, "_sync_client", redis.Redis(port=free_port(), socket_connect_timeout=0.5))
    response = scrape(REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    assert families["realtime_active_connections"].samples
    assert families[PUSH].type == "histogram" and families[PUSH].samples == []

    monkeypatch.undo()
    assert value(scrape(REMOTE_ADDR="127.0.0.1").content.decode(), f"{PUSH}_count", audience="everyone") == 1
