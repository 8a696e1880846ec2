"""Prometheus metrics of the real-time core, in the text exposition format, with no client library.

Each web process keeps its own counters, gauges and histograms in memory and serves them
at ``GET /metrics`` (``realtime.views.metrics``: bearer token or allowed address only).
Every series carries ``region`` (``settings.REGION``) and ``process`` (``METRICS_PROCESS``,
or host:pid), so Prometheus sums processes and regions itself; nothing is shared between
processes, and a restarted process starts from zero, which Prometheus' ``rate()`` handles.

One exception: Celery pushes are timed in worker children, which serve no HTTP. That
histogram (:data:`PUSH_LATENCY`) is kept in Redis, per region, and every web process of
the region reports it; aggregate it with ``max by (region, audience, le)``.

The instrumented code calls the small functions at the bottom (``connection_opened``,
``message_in``, ``fanout_observe``...), one line each, so the consumers stay readable.
The metric names are listed in docs/deploy.md and used by deploy/generate.py (Grafana,
the autoscaler's custom metric); tests/deploy/test_deploy.py keeps them in step.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_lock = threading.Lock()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    body = ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs)
    return "{" + body + "}" if body else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Metric:
    """A named family of series, one per combination of its label values."""

    kind = ""

    def __init__(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], Any] = {}
        self.reset()
        REGISTRY.append(self)

    def _key(self, labels: dict[str, Any]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} {self.kind}"]

    def samples(self, const: list[tuple[str, str]]) -> list[str]:
        raise NotImplementedError

    def _zero(self) -> Any:
        return 0

    def reset(self) -> None:
        """Forget every series; a metric without labels starts at zero, so it is always reported."""
        with _lock:
            self._series.clear()
            if not self.labelnames:
                self._series[()] = self._zero()


class Counter(Metric):
    """A count that only goes up."""

    kind = "counter"

    def inc(self, amount: float = 1, **labels: Any) -> None:
        key = self._key(labels)
        with _lock:
            self._series[key] = self._series.get(key, 0) + amount

    def value(self, **labels: Any) -> float:
        return self._series.get(self._key(labels), 0)

    def samples(self, const: list[tuple[str, str]]) -> list[str]:
        with _lock:
            items = sorted(self._series.items())
        return [
            f"{self.name}{_labels(const + list(zip(self.labelnames, k, strict=True)))} {_number(v)}" for k, v in items
        ]


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def dec(self, amount: float = 1, **labels: Any) -> None:
        self.inc(-amount, **labels)


class Histogram(Metric):
    """Observations counted into cumulative ``le`` buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, doc: str, buckets: Sequence[float], labelnames: Sequence[str] = ()) -> None:
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        super().__init__(name, doc, labelnames)

    def _zero(self) -> Any:
        return [[0] * len(self.buckets), 0.0, 0]

    def observe(self, value: float, **labels: Any) -> None:
        key = self._key(labels)
        with _lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = self._zero()
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[0][i] += 1
                    break
            series[1] += value
            series[2] += 1

    def count(self, **labels: Any) -> int:
        series = self._series.get(self._key(labels))
        return series[2] if series else 0

    def _render(self, pairs: list[tuple[str, str]], per_bucket: Sequence[int], total: float, count: int) -> list[str]:
        lines, running = [], 0
        for bound, n in zip(self.buckets, per_bucket, strict=True):
            running += n
            lines.append(f"{self.name}_bucket{_labels(pairs + [('le', _number(bound))])} {running}")
        lines.append(f"{self.name}_sum{_labels(pairs)} {_number(total)}")
        lines.append(f"{self.name}_count{_labels(pairs)} {count}")
        return lines

    def samples(self, const: list[tuple[str, str]]) -> list[str]:
        with _lock:
            items = sorted((k, (list(s[0]), s[1], s[2])) for k, s in self._series.items())
        lines: list[str] = []
        for key, (per_bucket, total, count) in items:
            lines += self._render(const + list(zip(self.labelnames, key, strict=True)), per_bucket, total, count)
        return lines


class SharedHistogram(Histogram):
    """A histogram kept in Redis, for observations made where no /metrics is served (Celery children).

    Series carry ``region`` but no ``process``: every process of a region reports the same
    numbers. Writes are best-effort: a Redis failure loses an observation, never a push.
    """

    KEY_PREFIX = "metrics:"

    def _redis_key(self, region: str, key: tuple[str, ...]) -> str:
        return f"{self.KEY_PREFIX}{self.name}:" + json.dumps([region, *key])

    def observe(self, value: float, **labels: Any) -> None:
        from django.conf import settings

        from realtime.redis_pool import redis_sync

        key = self._key(labels)
        index = next(i for i, bound in enumerate(self.buckets) if value <= bound)
        redis_key = self._redis_key(settings.REGION, key)
        try:
            pipe = redis_sync().pipeline(transaction=False)
            pipe.hincrby(redis_key, f"b{index}", 1)
            pipe.hincrby(redis_key, "count", 1)
            pipe.hincrbyfloat(redis_key, "sum", value)
            pipe.sadd(f"{self.KEY_PREFIX}{self.name}", redis_key)
            pipe.execute()
        except Exception:
            logger.debug("could not record %s", self.name, exc_info=True)

    def samples(self, const: list[tuple[str, str]]) -> list[str]:
        from realtime.redis_pool import redis_sync

        region = [(k, v) for k, v in const if k == "region"]
        client = redis_sync()
        lines: list[str] = []
        for raw in sorted(client.smembers(f"{self.KEY_PREFIX}{self.name}")):
            redis_key = raw.decode()
            series_region, *key = json.loads(redis_key[len(f"{self.KEY_PREFIX}{self.name}:"):])
            if [("region", series_region)] != region:
                continue
            fields = {k.decode(): v for k, v in client.hgetall(redis_key).items()}
            per_bucket = [int(fields.get(f"b{i}", 0)) for i in range(len(self.buckets))]
            lines += self._render(
                region + list(zip(self.labelnames, key, strict=True)),
                per_bucket,
                float(fields.get("sum", 0)),
                int(fields.get("count", 0)),
            )
        return lines


REGISTRY: list[Metric] = []

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
RTT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5)

ACTIVE_CONNECTIONS = Gauge(
    "realtime_active_connections", "Open sockets (WebSocket and long-polling) served by this process."
)
MESSAGES_IN = Counter("realtime_messages_in_total", "Frames received from clients.")
MESSAGES_OUT = Counter("realtime_messages_out_total", "Events sent to clients.")
BROADCAST_WRITES = Counter(
    "realtime_broadcast_writes_total",
    "Broadcast frames written to sockets: pre-encoded straight to the socket (direct) or through ASGI send.",
    ("path",),
)
FANOUT_LATENCY = Histogram(
    "realtime_fanout_latency_seconds",
    "Time from a broadcast's publish to its delivery by a consumer (clocks of both hosts).",
    LATENCY_BUCKETS,
)
PING_RTT = Histogram(
    "realtime_ping_rtt_seconds", "Round trip measured by clients and reported in their ping frames.", RTT_BUCKETS
)
LAYER_ERRORS = Counter(
    "realtime_channel_layer_errors_total", "Channel layer (Redis) operations that failed.", ("op",)
)
LAYER_DROPPED = Counter(
    "realtime_channel_layer_dropped_total",
    "Layer messages dropped: a socket's queue was full (capacity) or the message type was unknown.",
    ("reason",),
)
PUSH_LATENCY = SharedHistogram(
    "realtime_push_latency_seconds",
    "Duration of a sync push (Celery tasks, admin actions) to the channel layer, region-wide.",
    LATENCY_BUCKETS,
    ("audience",),
)


def process_label() -> str:
    """This process's ``process`` label: ``METRICS_PROCESS``, or host:pid."""
    return os.environ.get("METRICS_PROCESS") or f"{socket.gethostname()}:{os.getpid()}"


def exposition() -> str:
    """Every metric in the text exposition format (version 0.0.4)."""
    from django.conf import settings

    const = [("region", settings.REGION), ("process", process_label())]
    lines: list[str] = []
    for metric in REGISTRY:
        try:
            samples = metric.samples(const)
        except Exception:
            # A shared metric whose Redis is down: report the rest.
            logger.warning("could not collect %s", metric.name, exc_info=True)
            samples = []
        lines += metric.header() + samples
    return "\n".join(lines) + "\n"


# --- Access -------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def scrape_allowed(*, authorization: str, remote_addr: str) -> bool:
    """Whether a request may read /metrics: ``Bearer METRICS_TOKEN``, or an address in ``METRICS_ALLOW_IPS``."""
    from django.conf import settings

    token = settings.METRICS_TOKEN
    scheme, _, given = authorization.partition(" ")
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
        BROADCAST_WRITES.inc(direct, path="direct")
    if sent > direct:
        BROADCAST_WRITES.inc(sent - direct, path="asgi")


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def fanout_observe(published_at: Any) -> None:
    """A broadcast reached its consumer; ``published_at`` is the layer message's ``ts`` (if any).

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


def layer_error(op: str) -> None:
    """A channel layer operation failed (``op``: connect, disconnect, publish, push)."""
    LAYER_ERRORS.inc(op=op)


def layer_dropped(reason: str, amount: int = 1) -> None:
    """Layer messages were dropped (``reason``: capacity, unknown_type)."""
    LAYER_DROPPED.inc(amount, reason=reason)


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
                layer_error("push")
                raise
            PUSH_LATENCY.observe(time.perf_counter() - start, audience=audience)
            return result

        return timed  # type: ignore[return-value]

    return decorate


class _CapacityDropCounter(logging.Handler):
    """Counts channels_redis's "N of M channels over capacity in group G" reports as drops.

    channels_redis drops a group message for each member whose queue is full and only
    logs it, at INFO (so LOG_LEVEL above INFO hides these drops from the metric too).
    """

    MESSAGE = "%s of %s channels over capacity in group %s"

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == self.MESSAGE and record.args:
            try:
                layer_dropped("capacity", int(record.args[0]))  # type: ignore[index]
            except (TypeError, ValueError):
                pass


def _capacity_drops_watch() -> None:
    channels_logger = logging.getLogger("channels_redis.core")
    if not any(isinstance(h, _CapacityDropCounter) for h in channels_logger.handlers):
        channels_logger.addHandler(_CapacityDropCounter())


_capacity_drops_watch()
