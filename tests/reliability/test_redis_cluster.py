"""The chat on a real Redis Cluster (3 masters, 3 replicas): two web processes, one room, a master killed.

With ``REDIS_CLUSTER_URL`` the hub uses sharded pub/sub and presence, rate limits and
tickets live in the cluster (Celery's broker stays on the session's Redis). The chat
must work across two Daphne processes, and when the master owning the room's slot is
killed, its replica takes over and the chat recovers by itself: every committed message
reaches every member exactly once, by seq.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from realtime.hub import PREFIX
from tests import services
from tests.reliability.test_faults import chat, everyone_has_everything, start_clients

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


class ClusterChat:
    """A Redis Cluster and two Daphne processes on it."""

    def __init__(self, app_env: dict[str, str]) -> None:
        self.redis = services.RedisCluster(masters=3, replicas=1).start()
        env = {**app_env, "REDIS_CLUSTER_URL": self.redis.url}
        self.d1 = services.daphne_service(env).start()
        self.d2 = services.daphne_service(env).start()

    def stop(self) -> None:
        for service in (self.d1, self.d2):
            service.stop()
        self.redis.stop()


@pytest.fixture
def cluster_chat(app_env: dict[str, str]) -> Iterator[ClusterChat]:
    c = ClusterChat(app_env)
    yield c
    c.stop()


async def test_two_processes_chat_through_sharded_pub_sub(cluster_chat, people):
    """alice on one process and bob on the other see every message once, in seq order."""
    clients = await start_clients(cluster_chat, people)
    try:
        sent = await chat(clients, "hello", 5)
        await everyone_has_everything(clients, sent, in_order=True)
        channel = PREFIX + "room.lobby"
        owner = cluster_chat.redis.master_of(channel)
        numsub = dict(redis.Redis(port=owner).execute_command("PUBSUB SHARDNUMSUB", channel))
        assert numsub[channel.encode()] == 2, "each process subscribed once, on the shard that owns the room"
    finally:
        for c in clients:
            await c.stop()


async def test_killed_master_fails_over_and_every_message_arrives_once(cluster_chat, people):
    """Kill the room's master mid-conversation: after the replica takes over, nothing is lost or repeated."""
    clients = await start_clients(cluster_chat, people)
    try:
        sent = await chat(clients, "before", 3)
        for c in clients:
            await c.settle()
        owner = cluster_chat.redis.master_of(PREFIX + "room.lobby")
        cluster_chat.redis.kill(owner)
        sent += await chat(clients, "during", 3)  # refused while the slot has no master; resent after
        await asyncio.to_thread(cluster_chat.redis.wait_failover, owner)
        assert cluster_chat.redis.master_of(PREFIX + "room.lobby") != owner
        await everyone_has_everything(clients, sent, timeout=60)
        sent += await chat(clients, "after", 3)
        await everyone_has_everything(clients, sent, timeout=60)
    finally:
        for c in clients:
            await c.stop()
