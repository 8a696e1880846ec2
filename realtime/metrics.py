"""Prometheus metrics of the real-time core, through ``prometheus_client``.

Each web process keeps its own counters, gauges and histograms (:data:`PROCESS_REGISTRY`)
and serves them at ``GET /metrics`` (``realtime.views.metrics``: bearer token or allowed
address only). :data:`REGISTRY`, the one scraped, adds ``region`` (``settings.REGION``) and
``process`` (``METRICS_PROCESS``, or host:pid) to every series at scrape time, so Prometheus
sums processes and regions itself; a restarted process starts from zero, which ``rate()``
handles.

Under ``realtime.web`` the web processes of a host share one port, so a scrape reaches
one of them at random: that one asks its siblings for theirs over their private unix
sockets (``WEB_PEER_DIR``) and answers for the whole host, each process still its own
``process`` series.

One exception: Celery pushes are timed in worker children, which serve no HTTP. That
histogram (:data:`PUSH_LATENCY`) is kept in Redis, per region, and every web process of
the region reports it (with ``region`` only); aggregate it with
``max by (region, audience, le)``.

The instrumented code calls the small functions at the bottom (``connection_opened``,
``message_in``, ``fanout_observe``...), one line each, so the consumers stay readable.
The metric names are listed in docs/deploy.md and used by deploy/generate.py (Grafana,
the autoscaler's custom metric); tests/deploy/test_deploy.py keeps them in step.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import itertools
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

logger = logging.getLogger(__name__)

# The content type of what generate_latest writes (the text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# No ``*_created`` series: a start time per counter and histogram that rate() does not
# need, and that would double the series every process reports.
disable_created_metrics()


def process_label() -> str:
    """This process's ``process`` label: ``METRICS_PROCESS``, or host:pid."""
    return os.environ.get("METRICS_PROCESS") or f"{socket.gethostname()}:{os.getpid()}"


def _region() -> str:
    from django.conf import settings

    return settings.REGION


class ProcessLabels(Collector):
    """A collector that reports another registry's metrics with ``region`` and ``process`` added.

    The labels are read at each scrape, not bound when the metric is made: the hot path
    updates label-free children, and a forked process reports its own pid.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def describe(self) -> list[Metric]:
        return [Metric(f.name, f.documentation, f.type, f.unit) for f in self.registry.collect()]

    def collect(self) -> Iterator[Metric]:
        const = {"region": _region(), "process": process_label()}
        for family in self.registry.collect():
            family.samples = [sample._replace(labels={**const, **sample.labels}) for sample in family.samples]
            yield family


class RedisHistogram(Collector):
    """A histogram kept in Redis, for observations made where no /metrics is served (Celery children).

    A ``prometheus_client`` collector: each scrape reads the region's series from Redis.
    Series carry ``region`` but no ``process``: every process of a region reports the same
    numbers. Writes are best-effort (a Redis failure loses an observation, never a push),
    and so are reads: with Redis down the scrape reports the family empty and the rest whole.
    """

    KEY_PREFIX = "metrics:"

    def __init__(self, name: str, documentation: str, buckets: Sequence[float], labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.buckets = (*sorted(buckets), math.inf)
        self.labelnames = tuple(labelnames)
        self._index = f"{self.KEY_PREFIX}{name}"  # the set of every series' hash key

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=("region", *self.labelnames))

    def observe(self, value: float, **labels: str) -> None:
        """Count ``value`` into the region's series of these label values (``audience=...``)."""
        from realtime.redis_pool import redis_sync

        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        index = next(i for i, bound in enumerate(self.buckets) if value <= bound)
        key = f"{self._index}:" + json.dumps([_region(), *(str(labels[n]) for n in self.labelnames)])
        try:
            pipe = redis_sync().pipeline(transaction=False)
            pipe.hincrby(key, f"b{index}", 1)
            pipe.hincrby(key, "count", 1)  # unused here (+Inf is the count); older releases read it
            pipe.hincrbyfloat(key, "sum", value)
            pipe.sadd(self._index, key)
            pipe.execute()
        except Exception:
            logger.debug("could not record %s", self.name, exc_info=True)

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        try:
            series = self._read(_region())
        except Exception:
            logger.warning("could not collect %s from Redis", self.name, exc_info=True)
            series = []
        for label_values, per_bucket, total in series:
            cumulative = list(itertools.accumulate(per_bucket))
            family.add_metric(
                label_values, [(floatToGoString(b), n) for b, n in zip(self.buckets, cumulative, strict=True)], total
            )
        yield family

    def _read(self, region: str) -> list[tuple[list[str], list[int], float]]:
        """(label values with region first, per-bucket counts, sum) of each of the region's series."""
        from realtime.redis_pool import redis_sync

        client = redis_sync()
        prefix = len(self._index) + 1
        labelled = {key: json.loads(key[prefix:]) for key in sorted(k.decode() for k in client.smembers(self._index))}
        keys = [key for key, values in labelled.items() if values[0] == region]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        series = []
        for key, raw in zip(keys, pipe.execute(), strict=True):
            fields = {k.decode(): v for k, v in raw.items()}
            per_bucket = [int(fields.get(f"b{i}", 0)) for i in range(len(self.buckets))]
            series.append((labelled[key], per_bucket, float(fields.get("sum", 0))))
        return series


LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
RTT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5)

# This process's own metrics, without the constant labels (ProcessLabels adds them).
PROCESS_REGISTRY = CollectorRegistry()

ACTIVE_CONNECTIONS = Gauge(
    "realtime_active_connections",
    "Open sockets (WebSocket and long-polling) served by this process.",
    registry=PROCESS_REGISTRY,
)
MESSAGES_IN = Counter("realtime_messages_in_total", "Frames received from clients.", registry=PROCESS_REGISTRY)
MESSAGES_OUT = Counter("realtime_messages_out_total", "Events sent to clients.", registry=PROCESS_REGISTRY)
BROADCAST_WRITES = Counter(
    "realtime_broadcast_writes_total",
    "Broadcast frames written to sockets: pre-encoded straight to the socket (direct) or through ASGI send.",
    ("path",),
    registry=PROCESS_REGISTRY,
)
FANOUT_LATENCY = Histogram(
    "realtime_fanout_latency_seconds",
    "Time from a broadcast's publish to its delivery by a consumer (clocks of both hosts).",
    buckets=LATENCY_BUCKETS,
    registry=PROCESS_REGISTRY,
)
PING_RTT = Histogram(
    "realtime_ping_rtt_seconds",
    "Round trip measured by clients and reported in their ping frames.",
    buckets=RTT_BUCKETS,
    registry=PROCESS_REGISTRY,
)
REDIS_ERRORS = Counter(
    "realtime_redis_errors_total",
    "Redis operations of the real-time path that failed (connect, disconnect, publish, push).",
    ("op",),
    registry=PROCESS_REGISTRY,
)
BROADCAST_DROPPED = Counter(
    "realtime_broadcast_dropped_total",
    "Messages a consumer dropped without delivering them (unknown_type: of no type it handles).",
    ("reason",),
    registry=PROCESS_REGISTRY,
)
ADMISSION_REFUSED = Counter(
    "realtime_admission_refused_total",
    "Handshakes (503 + Retry-After) and joins refused over the process's admission budget (realtime.admission).",
    ("kind",),
    registry=PROCESS_REGISTRY,
)
JOIN_HISTORY = Counter(
    "realtime_join_history_total",
    "Joins by where their history came from: this process's stream cache (realtime.streams) or the database.",
    ("source",),
    registry=PROCESS_REGISTRY,
)
STREAM_CACHE_SEEDED = Counter(
    "realtime_stream_cache_seeded_total",
    "Topic windows of the stream cache started from a join's database read (realtime.streams).",
    registry=PROCESS_REGISTRY,
)
STREAM_CACHE_DROPPED = Counter(
    "realtime_stream_cache_dropped_total",
    "Topic windows of the stream cache dropped: stream (Redis connection, last socket, shard move), "
    "gap (a seq missing too long), audit (behind the database), stale (another room's, or ahead of the database).",
    ("reason",),
    registry=PROCESS_REGISTRY,
)
PUSH_LATENCY = RedisHistogram(
    "realtime_push_latency_seconds",
    "Duration of a sync push (Celery tasks, admin actions) to Redis, region-wide.",
    LATENCY_BUCKETS,
    ("audience",),
)

# What GET /metrics reports: this process's metrics, labelled, and the region's push histogram.
REGISTRY = CollectorRegistry()
REGISTRY.register(ProcessLabels(PROCESS_REGISTRY))
REGISTRY.register(PUSH_LATENCY)


def exposition(*, siblings: bool = True, host: str = "localhost") -> bytes:
    """Every metric in the text exposition format (:data:`CONTENT_TYPE`).

    With ``siblings``, under realtime.web: the other web processes' series too, asked
    with ``host`` (the scrape's own, so it passes ``ALLOWED_HOSTS`` there as it did here).
    """
    from django.conf import settings

    own = generate_latest(REGISTRY)
    if not siblings or not settings.WEB_PEER_DIR:
        return own
    others = [text for text in (_sibling_exposition(path, host) for path in _sibling_sockets()) if text]
    return merged_exposition([own.decode(), *others]) if others else own


def _sibling_sockets() -> list[str]:
    from django.conf import settings

    from realtime.web import PEER_SUFFIX, peer_socket_path

    own = peer_socket_path(settings.WEB_PEER_DIR, settings.WEB_PROCESS_INDEX).name
    try:
        with os.scandir(settings.WEB_PEER_DIR) as entries:
            return sorted(e.path for e in entries if e.name.endswith(PEER_SUFFIX) and e.name != own)
    except OSError:
        return []


def _sibling_exposition(path: str, host: str) -> str | None:
    """One sibling's own metrics, asked with the launcher's peer token (None if it does not answer)."""
    import httpx
    from django.conf import settings

    headers = {"Authorization": f"Bearer {settings.WEB_PEER_TOKEN}", SIBLINGS_HEADER: "0", "Host": host}
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=2.0) as client:
            response = client.get("http://web/metrics", headers=headers)
    except httpx.HTTPError:
        return None  # restarting: its series are missing from this scrape, as for a dead process
    if response.status_code != 200:
        logger.warning("web process at %s answered /metrics with %d", path, response.status_code)
        return None
    return response.text


#: Sent by a web process asking a sibling for its metrics: "0" means only yours.
SIBLINGS_HEADER = "X-Metrics-Siblings"


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def merged_exposition(texts: Sequence[str]) -> bytes:
    """Several processes' expositions as one: each family once, each series once.

    A series in several (the region's push histogram, which every process reads from
    Redis) is kept from the first text only.
    """
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for text in texts:
        for family in text_string_to_metric_families(text):
            into = families.get(family.name)
            if into is None:
                into = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in seen:
                    seen.add(key)
                    into.samples.append(sample)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families.values())))
    return generate_latest(registry)


# --- Access -------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def scrape_allowed(*, authorization: str, remote_addr: str) -> bool:
    """Whether a request may read /metrics: ``Bearer METRICS_TOKEN``, or an address in ``METRICS_ALLOW_IPS``."""
    from django.conf import settings

    scheme, _, given = authorization.partition(" ")
    # METRICS_TOKEN, or the token realtime.web gives its children to ask each other.
    for token in (settings.METRICS_TOKEN, settings.WEB_PEER_TOKEN):
        if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(tuple(settings.METRICS_ALLOW_IPS)))


# --- Instrumentation (one call per instrumented line) -----------------------------------

# Children bound once: the delivery path runs these per broadcast.
_WRITES_DIRECT = BROADCAST_WRITES.labels(path="direct")
_WRITES_ASGI = BROADCAST_WRITES.labels(path="asgi")
# The known failures are reported from the start, at 0, so rate() sees the first one.
for _op in ("connect", "disconnect", "publish", "push"):
    REDIS_ERRORS.labels(op=_op)
BROADCAST_DROPPED.labels(reason="unknown_type")
for _kind in ("handshake", "join"):
    ADMISSION_REFUSED.labels(kind=_kind)
for _kind in ("cache", "database"):
    JOIN_HISTORY.labels(source=_kind)
for _kind in ("stream", "gap", "audit", "stale"):
    STREAM_CACHE_DROPPED.labels(reason=_kind)


def connection_opened(consumer: Any) -> None:
    """A socket was accepted (``ProtocolConsumer.websocket_connect``)."""
    consumer._metrics_counted = True
    ACTIVE_CONNECTIONS.inc()


def connection_closed(consumer: Any) -> None:
    """A socket went away; counts only sockets that :func:`connection_opened` counted, once."""
    if getattr(consumer, "_metrics_counted", False):
        consumer._metrics_counted = False
        ACTIVE_CONNECTIONS.dec()


def message_in() -> None:
    """A client frame arrived (``ProtocolConsumer.receive``)."""
    MESSAGES_IN.inc()


def message_out(count: int = 1) -> None:
    """Events are being sent to clients (``send_event``, or a broadcast to ``count`` sockets)."""
    MESSAGES_OUT.inc(count)


def broadcast_sent(frames: dict[Any, Any]) -> None:
    """One broadcast went out (the tallies ``ProtocolConsumer.hub_deliver`` kept in ``frames``).

    ``sent`` sockets in all, ``direct`` of them by realtime.wire, the rest by ASGI send.
    """
    sent = frames.get("sent", 0)
    if not sent:
        return
    MESSAGES_OUT.inc(sent)
    direct = frames.get("direct", 0)
    if direct:
        _WRITES_DIRECT.inc(direct)
    if sent > direct:
        _WRITES_ASGI.inc(sent - direct)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def fanout_observe(published_at: Any) -> None:
    """A broadcast reached its consumer; ``published_at`` is the broadcast's ``ts`` (if any).

    Clocks of different hosts differ a little: a negative delay counts as zero.
    """
    ts = _seconds(published_at)
    if ts is not None:
        FANOUT_LATENCY.observe(max(0.0, time.time() - ts))


def ping_rtt_observe(rtt_ms: Any) -> None:
    """A ping reported the client's last round trip in ms; absurd values (<0, >10 min) are ignored."""
    rtt = _seconds(rtt_ms)
    if rtt is not None and 0 <= rtt <= 600_000:
        PING_RTT.observe(rtt / 1000)


def redis_error(op: str) -> None:
    """A Redis operation of the real-time path failed (``op``: connect, disconnect, publish, push)."""
    REDIS_ERRORS.labels(op=op).inc()


def broadcast_dropped(reason: str, amount: int = 1) -> None:
    """A consumer dropped messages without delivering them (``reason``: unknown_type)."""
    BROADCAST_DROPPED.labels(reason=reason).inc(amount)


def admission_refused(kind: str) -> None:
    """A handshake or a join was refused over the admission budget (``kind``: handshake, join)."""
    ADMISSION_REFUSED.labels(kind=kind).inc()


def join_history(source: str) -> None:
    """A join got its history from ``source``: ``cache`` (realtime.streams) or ``database``."""
    JOIN_HISTORY.labels(source=source).inc()


def stream_cache_seeded() -> None:
    """A topic's window of the stream cache started from a join's database read."""
    STREAM_CACHE_SEEDED.inc()


def stream_cache_dropped(reason: str) -> None:
    """A topic's window of the stream cache was dropped (``reason``: stream, gap, audit, stale)."""
    STREAM_CACHE_DROPPED.labels(reason=reason).inc()


F = TypeVar("F", bound=Callable[..., Any])


def push_timed(audience: str) -> Callable[[F], F]:
    """Decorate a sync push function: time successful pushes, count failed ones."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            except Exception:
                redis_error("push")
                raise
            PUSH_LATENCY.observe(time.perf_counter() - start, audience=audience)
            return result

        return timed  # type: ignore[return-value]

    return decorate
