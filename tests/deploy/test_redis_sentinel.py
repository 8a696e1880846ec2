"""Redis Sentinel: REDIS_SENTINELS + REDIS_SENTINEL_MASTER switch the project's Redis clients and the Celery broker.

Settings are read in a fresh ``manage.py`` process with the variables set, as a
deployment would; then a real Sentinel (``redis-server --sentinel``) watching the test
Redis proves that both clients find the master through it and carry messages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import services
from tests.services import ROOT

PRINT_SETTINGS = """
import json
from django.conf import settings
from realtime.redis_pool import new_sync_client

# What the project's Redis clients would connect to (building one does not connect).
pool = new_sync_client().connection_pool
manager = getattr(pool, "sentinel_manager", None)
print(json.dumps({
    "client": {
        "master": getattr(pool, "service_name", None),
        "sentinels": [
            [s.connection_pool.connection_kwargs[k] for k in ("host", "port", "password")] for s in manager.sentinels
        ] if manager else None,
        "address": None if manager else [pool.connection_kwargs[k] for k in ("host", "port", "db")],
        "password": pool.connection_kwargs.get("password"),
    },
    "broker": settings.CELERY_BROKER_URL,
    "transport": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "redis_url": settings.REDIS_URL,
}))
"""


def shell(code: str, **env: str) -> subprocess.CompletedProcess:
    """``manage.py shell -c code`` with only the given Redis/broker variables (not the test session's broker)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REDIS_SENTINEL", "CELERY_BROKER"))}
    full.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=full, capture_output=True, text=True,
        timeout=60,
    )


def settings_with(**env: str) -> dict:
    result = shell(PRINT_SETTINGS, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_without_sentinel_variables_the_clients_and_broker_use_redis_url():
    """No REDIS_SENTINELS: the project's Redis clients and the broker connect to REDIS_URL, as before."""
    s = settings_with(REDIS_URL="redis://10.9.9.9:6379/3")
    assert s["client"] == {"master": None, "sentinels": None, "address": ["10.9.9.9", 6379, 3], "password": None}
    assert s["redis_url"] == "redis://10.9.9.9:6379/3"
    s = settings_with(REDIS_URL="redis://10.9.9.9:6379/0")
    assert s["broker"] == "redis://10.9.9.9:6379/0"
    assert "master_name" not in s["transport"]


def test_sentinel_variables_give_the_sentinel_forms():
    """REDIS_SENTINELS/MASTER: clients that ask those sentinels for that master, and a sentinel:// broker with
    master_name."""
    s = settings_with(
        REDIS_URL="redis://10.9.9.9:6379/0",
        REDIS_SENTINELS="10.0.0.1:26379, [fd00::2]:26380,sentinel-c",
        REDIS_SENTINEL_MASTER="realtime-us-east",
    )
    sentinels = [["10.0.0.1", 26379, None], ["fd00::2", 26380, None], ["sentinel-c", 26379, None]]
    assert s["client"] == {"master": "realtime-us-east", "sentinels": sentinels, "address": None, "password": None}
    assert s["broker"] == "sentinel://10.0.0.1:26379;sentinel://[fd00::2]:26380;sentinel://sentinel-c:26379"
    assert s["transport"]["master_name"] == "realtime-us-east"
    assert s["transport"]["visibility_timeout"] == 3600  # the other options are kept
    assert s["redis_url"] == "redis://10.9.9.9:6379/0"  # kept, unused while the sentinels lead


def test_sentinel_password_reaches_the_sentinels_and_the_master():
    """REDIS_SENTINEL_PASSWORD: for the sentinels and the master the clients reach, in the broker URLs (quoted)."""
    s = settings_with(REDIS_SENTINELS="s1:26379", REDIS_SENTINEL_MASTER="m", REDIS_SENTINEL_PASSWORD="p@ss/word")
    assert s["client"]["sentinels"] == [["s1", 26379, "p@ss/word"]]
    assert s["client"]["password"] == "p@ss/word"
    assert s["broker"] == "sentinel://:p%40ss%2Fword@s1:26379"
    assert s["transport"]["sentinel_kwargs"] == {"password": "p@ss/word"}


def test_explicit_broker_url_wins_and_a_master_name_is_required():
    """CELERY_BROKER_URL set explicitly is kept; REDIS_SENTINELS without a master refuses to start."""
    s = settings_with(REDIS_SENTINELS="s1:26379", REDIS_SENTINEL_MASTER="m", CELERY_BROKER_URL="redis://b:6379/1")
    assert s["broker"] == "redis://b:6379/1" and "master_name" not in s["transport"]
    result = shell(PRINT_SETTINGS, REDIS_SENTINELS="s1:26379")
    assert result.returncode != 0 and "REDIS_SENTINELS requires REDIS_SENTINEL_MASTER" in result.stderr


ROUND_TRIP = """
import asyncio, json
from realtime import broadcast, presence
from realtime.celery import app
from realtime.redis_pool import redis_sync

async def hub_round_trip():
    async with broadcast.alisten("sentinel-check") as queue:
        await broadcast.apublish("sentinel-check", {"type": "sentinel.check", "n": 1})
        message = await asyncio.wait_for(queue.get(), 5)
    await presence.connection_open(user_id=1, conn_id="sentinel")
    count = await presence.sockets_in("user.1")
    return message, count

message, count = asyncio.run(hub_round_trip())
redis_sync().set("sentinel-sync", "ok")
with app.connection_for_write() as conn:
    conn.ensure_connection(max_retries=3)
    queue = conn.SimpleQueue("sentinel-check")
    queue.put({"n": 2})
    got = queue.get(timeout=5)
    got.ack()
    queue.close()
    transport = type(conn.transport).__module__ + "." + type(conn.transport).__name__
print(json.dumps({"broadcast": message, "sockets": count, "sync": redis_sync().get("sentinel-sync").decode(),
                  "broker": got.payload, "transport": transport}))
"""


@pytest.fixture
def sentinel(redis_service, tmp_path):
    """A real Redis Sentinel watching the test session's Redis as master ``testmaster``."""
    port = services.free_port()
    conf = tmp_path / "sentinel.conf"  # Sentinel rewrites its file: it must be writable.
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor testmaster 127.0.0.1 {redis_service.port} 1\n"
        "sentinel down-after-milliseconds testmaster 5000\n"
    )
    server = services.Service(
        "redis-sentinel", [services.shutil.which("redis-server"), str(conf), "--sentinel"], env=dict(os.environ),
        port=port,
    ).start()
    yield server
    server.stop()


@pytest.mark.live
def test_hub_presence_and_broker_find_the_master_through_a_real_sentinel(sentinel):
    """With only the sentinel's address and the master's name: a broadcast, presence keys and a broker message."""
    result = shell(
        ROUND_TRIP,
        REDIS_URL="redis://127.0.0.1:1/0",  # nothing listens there: only the sentinel can lead to the master
        REDIS_SENTINELS=f"127.0.0.1:{sentinel.port}",
        REDIS_SENTINEL_MASTER="testmaster",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["broadcast"] == {"type": "sentinel.check", "n": 1}
    assert out["sockets"] == 1 and out["sync"] == "ok"
    assert out["broker"] == {"n": 2}
    assert out["transport"] == "kombu.transport.redis.SentinelTransport"
