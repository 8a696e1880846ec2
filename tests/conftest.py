"""Fixtures: a real Redis for the session, live Daphne processes, users and browsers.

Redis starts before any test and its URL replaces the settings' default, so consumer
tests (WebsocketCommunicator) broadcast through the real Redis too. The SQLite test
database is a file that the Daphne processes open as well; tests that talk to a live
server use ``transactional_db`` so their data is committed and visible there.

``TEST_DATABASE=postgres`` runs the same tests on a throwaway PostgreSQL cluster instead
(``make test`` runs the database suites both ways): started here before any test, with
the live processes pointed at its test database through ``DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tests import services

_redis: services.Service | None = None
_postgres: services.PostgresCluster | None = None


def _postgres_use(settings: Any) -> None:
    """Point the default database at a new throwaway PostgreSQL cluster (same dict, edited in place)."""
    global _postgres
    import dj_database_url

    _postgres = services.PostgresCluster().start()
    # Processes started from the tests without app_env still reach the test database.
    os.environ["DATABASE_URL"] = _postgres.url("test_chat")
    db = settings.DATABASES["default"]
    parsed = dj_database_url.parse(_postgres.url("chat"), conn_max_age=600, conn_health_checks=True)
    db.clear()
    db.update(parsed)
    db["OPTIONS"] = {"options": "-c lock_timeout=5000 -c statement_timeout=15000", "connect_timeout": 5}
    db["TEST"] = {"NAME": "test_chat"}
    from django.db import DEFAULT_DB_ALIAS, connections

    # Django already read DATABASES: fill in the defaults again, and drop any SQLite
    # connection object made from the old entry.
    connections.configure_settings(settings.DATABASES)
    try:
        del connections[DEFAULT_DB_ALIAS]
    except AttributeError:
        pass


def pytest_configure(config: pytest.Config) -> None:
    """Start the session's Redis and point every client at it (before any connects)."""
    global _redis
    _redis = services.redis_service().start()
    url = f"redis://127.0.0.1:{_redis.port}/0"
    os.environ["REDIS_URL"] = url
    os.environ["CELERY_BROKER_URL"] = url
    from django.conf import settings

    if os.environ.get("TEST_DATABASE") == "postgres":
        _postgres_use(settings)
    # One test database file per pytest process, so concurrent runs never share one.
    test_db = settings.DATABASES["default"].setdefault("TEST", {})
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        base = Path(test_db.get("NAME") or Path(settings.BASE_DIR) / "var" / "test.sqlite3")
        base.parent.mkdir(parents=True, exist_ok=True)
        test_db["NAME"] = str(base.with_name(f"{base.stem}-{os.getpid()}{base.suffix}"))
    settings.REDIS_URL = url
    settings.CELERY_BROKER_URL = url
    from realtime.celery import app

    app.conf.broker_url = url


def pytest_unconfigure(config: pytest.Config) -> None:
    if _redis is not None:
        _redis.stop()
    if _postgres is not None:
        _postgres.destroy()
    from django.conf import settings

    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name and str(os.getpid()) in name:
        for suffix in ("", "-wal", "-shm"):
            Path(name + suffix).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def redis_service() -> services.Service:
    """The session's Redis server process."""
    assert _redis is not None
    return _redis


@pytest.fixture(autouse=True)
def _clean_redis(redis_service: services.Service) -> Iterator[None]:
    """Each test starts with an empty Redis (presence, rate limits, tickets, layer, queued tasks).

    Kombu's exchange bindings stay: a running worker declared them once at start, and
    without them tasks published later would have nowhere to go.
    """
    import redis

    client = redis.Redis(port=redis_service.port)
    # Sockets left by earlier tests on the session's live Daphne processes (a browser
    # context closing asynchronously, a long-poll session awaiting its idle timeout) would
    # refresh their presence after the flush below and leak events into this test. Close
    # every one of them through the broadcast path, as a drain would, and let them leave.
    client.publish("rt:everyone", msgpack.packb({"type": "realtime.control", "action": "close", "code": 4000}))
    # Communicator sockets of earlier tests in this process never see a disconnect: stop
    # refreshing their presence here.
    from realtime.runtime import runtimes

    for rt in runtimes():
        rt.sockets.clear()
        # Those sockets keep their rooms subscribed, so the rooms' stream windows
        # (realtime.streams) would outlive the database each test starts afresh.
        rt.streams.windows.clear()
    from realtime.ratelimit import local_buckets_clear

    local_buckets_clear()  # the message rate limit's in-process half of the buckets flushed below
    # Wait while the number of open sockets falls (their cleanup announces departures, which
    # must happen before the flush); up to 5 s, and not for sockets that stay open.
    deadline = time.monotonic() + 5
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        count = client.zcount("conns:all", time.time(), "+inf")
        if count == 0:
            break
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > 1.0:
            break
        time.sleep(0.05)
    doomed = [k for k in client.scan_iter(count=1000) if not k.startswith(b"_kombu.binding.")]
    for start in range(0, len(doomed), 500):
        client.delete(*doomed[start:start + 500])
    client.close()
    yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every async test starts with ``_hub_caught_up`` (a sync one may not request an async
    fixture: the browser tests' sync Playwright then finds the loop running)."""
    import inspect

    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            item.fixturenames.insert(0, "_hub_caught_up")


@pytest.fixture
async def _hub_caught_up(_clean_redis: None) -> None:
    """Each async test starts with the session loop's hub caught up with what was published before it.

    Tests share one event loop, and communicator sockets of earlier tests keep rooms
    subscribed on its hub. While a sync test runs the loop does not, so what that test
    published (through the background loop) waits unread on the hub's connection and
    reached the *next* async test's sockets and listeners as if it were theirs. A barrier
    topic, published after subscribing, arrives after everything published before it: once
    it is in, the backlog went to the earlier sockets, before this test subscribes anything.
    """
    import uuid

    from realtime.broadcast import _QueueListener
    from realtime.runtime import runtimes

    loop = asyncio.get_running_loop()
    for rt in runtimes():
        hub = rt.hub
        if rt.loop is not loop or hub.reader is None or hub.reader.done() or not hub.connected.is_set():
            continue
        topic, listener = f"test-barrier-{uuid.uuid4().hex}", _QueueListener()
        await hub.subscribe(topic, listener)
        try:
            await hub.publish(topic, {"type": "barrier"})
            await asyncio.wait_for(listener.queue.get(), 5)
        finally:
            await hub.unsubscribe(topic, listener)


@pytest.fixture(scope="session")
def test_db_path(django_db_setup: Any) -> str:
    """The test database's name: the SQLite file, or PostgreSQL's database (shared with live servers)."""
    from django.db import connection

    return connection.settings_dict["NAME"]


@pytest.fixture(scope="session", autouse=True)
def _postgres_teardown_cleanly(request: pytest.FixtureRequest) -> Iterator[None]:
    """On PostgreSQL, end the connections other threads still hold before the test database is dropped.

    (The database thread of ``database_sync_to_async`` keeps its connection; PostgreSQL
    refuses to drop a database that anyone is connected to.)
    """
    if _postgres is None:
        yield
        return
    request.getfixturevalue("django_db_setup")
    blocker = request.getfixturevalue("django_db_blocker")
    yield
    from django.db import connection

    if connection.settings_dict["NAME"] != connection.settings_dict["TEST"]["NAME"]:
        return  # no test here used the database: none was created
    with blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def postgres() -> services.PostgresCluster | None:
    """The session's PostgreSQL cluster (``TEST_DATABASE=postgres``), else None."""
    return _postgres


def database_env(test_db_path: str) -> dict[str, str]:
    """What tells an app process to use the test database: DATABASE_URL, or SQLITE_PATH."""
    if _postgres is not None:
        return {"DATABASE_URL": _postgres.url(test_db_path)}
    return {"SQLITE_PATH": test_db_path}


@pytest.fixture(scope="session")
def app_env(redis_service: services.Service, test_db_path: str) -> dict[str, str]:
    """Environment for app processes: the session's Redis and the test database."""
    url = f"redis://127.0.0.1:{redis_service.port}/0"
    return services.app_env(
        REDIS_URL=url,
        CELERY_BROKER_URL=url,
        **database_env(test_db_path),
        DJANGO_DEBUG="1",
        # Short cycles so tests of expiry and re-checks run in seconds.
        PRESENCE_TTL="6",
        MODERATION_CACHE_SECONDS="0",
        WS_SESSION_RECHECK_SECONDS="2",
    )


@pytest.fixture(scope="session")
def daphne(app_env: dict[str, str]) -> Iterator[services.Service]:
    """One live Daphne process for the session."""
    server = services.daphne_service(app_env).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def daphne_b(app_env: dict[str, str]) -> Iterator[services.Service]:
    """A second live Daphne process sharing the same Redis and database."""
    server = services.daphne_service(app_env).start()
    yield server
    server.stop()


@pytest.fixture
def make_user(db: Any):
    """Create users: ``make_user("alice", is_staff=True)``; password is ``pw-<name>-123``."""
    from django.contrib.auth import get_user_model

    def make(username: str, **extra: Any):
        user = get_user_model().objects.create_user(username=username, password=f"pw-{username}-123", **extra)
        return user

    return make


@pytest.fixture
def lobby(db: Any):
    """The public room ``lobby``."""
    from chat.models import Room

    return Room.objects.create(slug="lobby", title="Lobby", is_public=True)


@pytest.fixture
def alice(make_user: Any):
    """The user ``alice``, in no room yet (some modules override her with a lobby member)."""
    return make_user("alice")


@pytest.fixture
def bob(make_user: Any):
    """The user ``bob``, in no room yet."""
    return make_user("bob")


@pytest.fixture
def people(alice: Any, bob: Any, lobby: Any):
    """alice and bob, with the public ``lobby`` to meet in."""
    return alice, bob


def session_cookie(user: Any) -> str:
    """A real session for ``user`` (logged in through Django's test client): the cookie value."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def cookie_header(user: Any) -> str:
    cookie = SimpleCookie()
    cookie["sessionid"] = session_cookie(user)
    return cookie.output(header="", attrs=[]).strip()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium (``make test`` installs it); nothing downloads a browser."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium package")
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    """Headless Chromium driven by Playwright.

    Playwright's sync API keeps an event loop in this thread, which trips Django's
    async-safety check on the test's own (sync) database calls; those calls are not
    concurrent with anything, so the check is lifted while the browser runs, as
    Playwright's and pytest-django's docs advise.
    """
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=chromium_path,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield b
        b.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture(scope="session")
def worker_env(app_env: dict[str, str]) -> dict[str, str]:
    """Environment for Celery workers: redeliver a dead worker's tasks after 3 s, not an hour."""
    return {**app_env, "CELERY_VISIBILITY_TIMEOUT": "3", "CELERY_RESTORE_INTERVAL": "1", "CELERY_RESTORE_THROTTLE": "1"}


@pytest.fixture(scope="session")
def celery_worker(worker_env: dict[str, str]) -> Iterator[services.Service]:
    """A real Celery worker process (prefork, Redis broker), not eager mode."""
    worker = services.celery_worker_start(services.celery_worker_service(worker_env))
    yield worker
    worker.stop()
