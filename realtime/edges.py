"""The regional edges: the catalogue in ``deploy/regions.toml`` and which edge suits a client.

The catalogue names each region's public WebSocket hostname, its health URL and the
services behind it. ``GET /api/edges/`` (``realtime.views.edges``) hands the public part
to clients, with the region preferred for the CDN's country header; ``deploy/generate.py``
turns the whole of it into nginx, systemd, Kubernetes and monitoring files.

This module imports nothing from Django at import time, so the generator can load it
with a bare Python 3.11 (``tomllib`` is in the standard library).
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "deploy" / "regions.toml"

_REGION_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class CatalogueError(ValueError):
    """The catalogue file is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class Daphne:
    """The web processes behind an edge: ``processes_per_host`` on each host, all on one ``port``.

    Each host runs ``python -m realtime.web`` with ``WEB_CONCURRENCY=processes_per_host``:
    its children share the port (SO_REUSEPORT), so the edge sees one address per host.
    """

    hosts: tuple[str, ...]
    processes_per_host: int
    port: int

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every ``host:port`` the edge sends to: one per host."""
        return tuple(f"{_host_for_url(h)}:{self.port}" for h in self.hosts)


@dataclass(frozen=True)
class Redis:
    """A region's Redis: ``url``, and optionally a Sentinel group (``sentinels`` naming ``master``)
    or a Redis Cluster (``cluster_url``, any node) for broadcasts, presence, rate limits and tickets.

    With Sentinel, every client and the Celery broker ask the sentinels for the master.
    With a cluster, ``url`` is the Celery broker's (kombu does not speak Cluster).
    """

    url: str
    sentinels: tuple[str, ...] = ()
    master: str = ""
    cluster_url: str = ""


@dataclass(frozen=True)
class Celery:
    """Celery workers per region (``workers`` units or pods, each with ``worker_concurrency`` children)."""

    worker_concurrency: int
    workers: int


@dataclass(frozen=True)
class Kubernetes:
    """Autoscaling bounds of the web Deployment and its target sockets per pod."""

    namespace: str
    min_replicas: int
    max_replicas: int
    connections_per_pod: int
    #: Web processes per pod (``WEB_CONCURRENCY``); the pod requests half a core for each.
    web_concurrency: int = 2


@dataclass(frozen=True)
class Region:
    """One regional edge and the services behind it."""

    name: str
    label: str
    hostname: str
    health_url: str
    daphne: Daphne
    redis: Redis
    celery: Celery
    kubernetes: Kubernetes
    # Optional full socket URL overriding wss://<hostname><ws_path> (a port, or ws:// in
    # local simulations such as deploy/simulate_regions.py).
    ws_url: str = ""

    def wss_url(self, ws_path: str) -> str:
        return self.ws_url or f"wss://{self.hostname}{ws_path}"


@dataclass(frozen=True)
class Catalogue:
    """Every region, the country map and the settings shared by all edges."""

    regions: dict[str, Region]
    countries: dict[str, str]
    site_origin: str
    ws_path: str
    health_path: str
    default_region: str
    beat_region: str
    tls_dir: str
    app_dir: str
    user: str
    image: str
    monitoring_networks: tuple[str, ...]
    cdn_networks: tuple[str, ...]
    cdn_client_ip_header: str
    path: str = field(default="", compare=False)

    def region_for_country(self, country: str | None) -> str:
        """The region for an ISO country code (the CDN's header); the default one when unknown."""
        code = (country or "").strip().upper()
        return self.countries.get(code, self.default_region)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _get(table: dict[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise CatalogueError(f"{where}: '{key}' is missing")
        return default
    value = table[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise CatalogueError(f"{where}: '{key}' must be an integer")
    if kind is not int and not isinstance(value, kind):
        raise CatalogueError(f"{where}: '{key}' must be a {kind.__name__}")
    return value


def _positive(table: dict[str, Any], key: str, where: str) -> int:
    value = _get(table, key, int, where)
    if value < 1:
        raise CatalogueError(f"{where}: '{key}' must be at least 1")
    return value


def _strings(table: dict[str, Any], key: str, where: str, default: Any = ...) -> tuple[str, ...]:
    items = _get(table, key, list, where, default)
    if not all(isinstance(i, str) and i for i in items):
        raise CatalogueError(f"{where}: '{key}' must be a list of non-empty strings")
    return tuple(items)


def _networks(items: tuple[str, ...], key: str) -> tuple[str, ...]:
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise CatalogueError(f"[edge]: '{key}' has {item!r}, not an address or network") from None
    return items


def _region(name: str, table: dict[str, Any]) -> Region:
    where = f"[regions.{name}]"
    if not _REGION_NAME.match(name):
        raise CatalogueError(f"{where}: region names are lower-case letters, digits and '-'")
    hostname = _get(table, "hostname", str, where)
    if not _HOSTNAME.match(hostname):
        raise CatalogueError(f"{where}: 'hostname' {hostname!r} is not a DNS name")
    health_url = _get(table, "health_url", str, where)
    if not health_url.startswith(("https://", "http://")):
        raise CatalogueError(f"{where}: 'health_url' must be an http(s) URL")
    ws_url = _get(table, "ws_url", str, where, "")
    if ws_url and not ws_url.startswith(("wss://", "ws://")):
        raise CatalogueError(f"{where}: 'ws_url' must be a ws(s) URL")

    d = _get(table, "daphne", dict, where)
    daphne = Daphne(
        hosts=_strings(d, "hosts", f"{where}.daphne"),
        processes_per_host=_positive(d, "processes_per_host", f"{where}.daphne"),
        # ``base_port``: the name from when each process had a port of its own.
        port=_get(d, "port", int, f"{where}.daphne", _get(d, "base_port", int, f"{where}.daphne", 0)),
    )
    if not daphne.hosts:
        raise CatalogueError(f"{where}.daphne: 'hosts' is empty")
    if not 1024 <= daphne.port <= 65535:
        raise CatalogueError(f"{where}.daphne: 'port' must lie within 1024-65535")

    r = _get(table, "redis", dict, where)
    redis = Redis(
        url=_get(r, "url", str, f"{where}.redis"),
        sentinels=_strings(r, "sentinels", f"{where}.redis", []),
        master=_get(r, "master", str, f"{where}.redis", ""),
        cluster_url=_get(r, "cluster_url", str, f"{where}.redis", ""),
    )
    if not redis.url.startswith(("redis://", "rediss://")):
        raise CatalogueError(f"{where}.redis: 'url' must be a redis:// or rediss:// URL")
    if bool(redis.sentinels) != bool(redis.master):
        raise CatalogueError(f"{where}.redis: 'sentinels' and 'master' go together")
    if redis.cluster_url and (redis.sentinels or not redis.cluster_url.startswith(("redis://", "rediss://"))):
        raise CatalogueError(f"{where}.redis: 'cluster_url' is a redis:// URL, and excludes 'sentinels'")

    c = _get(table, "celery", dict, where)
    celery = Celery(
        worker_concurrency=_positive(c, "worker_concurrency", f"{where}.celery"),
        workers=_positive(c, "workers", f"{where}.celery"),
    )

    k = _get(table, "kubernetes", dict, where)
    kubernetes = Kubernetes(
        namespace=_get(k, "namespace", str, f"{where}.kubernetes"),
        min_replicas=_positive(k, "min_replicas", f"{where}.kubernetes"),
        max_replicas=_get(k, "max_replicas", int, f"{where}.kubernetes"),
        connections_per_pod=_positive(k, "connections_per_pod", f"{where}.kubernetes"),
        web_concurrency=_positive(k, "web_concurrency", f"{where}.kubernetes") if "web_concurrency" in k else 2,
    )
    if kubernetes.max_replicas < kubernetes.min_replicas:
        raise CatalogueError(f"{where}.kubernetes: 'max_replicas' is below 'min_replicas'")

    return Region(
        name=name,
        label=_get(table, "label", str, where, name),
        hostname=hostname,
        health_url=health_url,
        daphne=daphne,
        redis=redis,
        celery=celery,
        kubernetes=kubernetes,
        ws_url=ws_url,
    )


def catalogue_load(path: str | os.PathLike[str]) -> Catalogue:
    """Read and check a catalogue file; :class:`CatalogueError` says what is wrong and where."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise CatalogueError(f"cannot read the regions catalogue {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{path}: {exc}") from exc

    edge = _get(data, "edge", dict, "catalogue")
    region_tables = _get(data, "regions", dict, "catalogue")
    if not region_tables:
        raise CatalogueError("catalogue: no [regions.<name>] table")
    regions = {name: _region(name, table) for name, table in region_tables.items()}

    countries = {}
    for code, region in _get(data, "countries", dict, "catalogue", {}).items():
        if not _COUNTRY.match(code) or region not in regions:
            raise CatalogueError(f"[countries]: {code} = {region!r} is not a country code and a known region")
        countries[code] = region

    catalogue = Catalogue(
        regions=regions,
        countries=countries,
        site_origin=_get(edge, "site_origin", str, "[edge]"),
        ws_path=_get(edge, "ws_path", str, "[edge]", "/ws/chat/"),
        health_path=_get(edge, "health_path", str, "[edge]", "/healthz"),
        default_region=_get(edge, "default_region", str, "[edge]", next(iter(regions))),
        beat_region=_get(edge, "beat_region", str, "[edge]", next(iter(regions))),
        tls_dir=_get(edge, "tls_dir", str, "[edge]", "/etc/ssl/realtime"),
        app_dir=_get(edge, "app_dir", str, "[edge]", "/srv/realtime"),
        user=_get(edge, "user", str, "[edge]", "realtime"),
        image=_get(edge, "image", str, "[edge]"),
        monitoring_networks=_networks(_strings(edge, "monitoring_networks", "[edge]", []), "monitoring_networks"),
        cdn_networks=_networks(_strings(edge, "cdn_networks", "[edge]", []), "cdn_networks"),
        cdn_client_ip_header=_get(edge, "cdn_client_ip_header", str, "[edge]", ""),
        path=str(path),
    )
    for key in ("default_region", "beat_region"):
        if getattr(catalogue, key) not in regions:
            raise CatalogueError(f"[edge]: '{key}' names no region in the catalogue")
    if not catalogue.ws_path.startswith("/") or not catalogue.health_path.startswith("/"):
        raise CatalogueError("[edge]: 'ws_path' and 'health_path' must start with '/'")
    return catalogue


_cache: dict[str, tuple[int, Catalogue]] = {}
_cache_lock = threading.Lock()


def catalogue() -> Catalogue:
    """The catalogue named by ``settings.REGIONS_FILE``, re-read when the file changes."""
    from django.conf import settings

    path = str(getattr(settings, "REGIONS_FILE", "") or DEFAULT_FILE)
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as exc:
        raise CatalogueError(f"cannot read the regions catalogue {path}: {exc.strerror}") from exc
    with _cache_lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
    loaded = catalogue_load(path)
    with _cache_lock:
        _cache[path] = (mtime, loaded)
    return loaded


def country_header_read(value: str | None) -> str | None:
    """The country code of a CDN header (``CF-IPCountry``), or None when absent or not a code.

    Cloudflare sends ``XX`` for unknown and ``T1`` for Tor; both are passed through and
    fall back to the default region (they are not in the map).
    """
    if not value:
        return None
    code = value.strip().upper()
    return code if re.fullmatch(r"[A-Z][A-Z0-9]", code) else None


def _edge_routing() -> bool:
    from django.conf import settings

    return bool(getattr(settings, "EDGE_ROUTING", True))


def edges_describe(*, country: str | None = None) -> dict[str, Any]:
    """What ``GET /api/edges/`` returns: every edge, and the preferred one when the country is known."""
    cat = catalogue()
    body: dict[str, Any] = {
        "regions": [
            {
                "name": r.name,
                "label": r.label,
                "hostname": r.hostname,
                "wss_url": r.wss_url(cat.ws_path),
                "health_url": r.health_url,
            }
            for r in cat.regions.values()
        ],
        "default": cat.default_region,
        # Clients route to the edges only from pages on site_origin, and not at all when
        # EDGE_ROUTING is off (static/js/edges.js); local development keeps its own host.
        "site_origin": cat.site_origin,
        "routing": _edge_routing(),
    }
    if country is not None:
        body["country"] = country
        body["preferred"] = cat.region_for_country(country)
    return body
