"""The real Redis Cluster the tests start (tests/services.py RedisCluster): what the hub will stand on.

Three masters with a replica each, on loopback. Proves what sharded pub/sub gives a chat
in a cluster: a message SPUBLISHed to a room's channel travels only to the shard that owns
the channel's slot (classic PUBLISH is copied to every node), and when that shard's master
is killed its replica takes over and serves the slot again.
"""

from __future__ import annotations

import time

import pytest
import redis

from tests import services

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def cluster():
    c = services.RedisCluster(masters=3, replicas=1).start()
    yield c
    c.stop()


def _subscriber(port: int, channel: str, *, sharded: bool) -> redis.client.PubSub:
    pubsub = redis.Redis(port=port, socket_timeout=5).pubsub(ignore_subscribe_messages=True)
    if sharded:
        pubsub.ssubscribe(channel)
    else:
        pubsub.subscribe(channel)
    return pubsub


def _next(pubsub: redis.client.PubSub, timeout: float = 3.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_sharded_message(timeout=0.2) if pubsub.shard_channels else pubsub.get_message(timeout=0.2)
        if message is not None:
            return message
    return None


def test_cluster_has_three_masters_and_every_slot_served(cluster):
    """`redis-cli --cluster create` built 3 masters and 3 replicas; every slot is served."""
    assert len(cluster.master_ports()) == 3 and len(cluster.nodes) == 6
    for port in cluster.master_ports():
        assert cluster.info(port)["cluster_slots_ok"] == "16384"


def test_spublish_reaches_only_the_owning_shard_while_publish_reaches_every_node(cluster):
    """A sharded message is delivered on the slot's master only; a classic one is copied to every node."""
    channel = "rt:room.lobby"
    owner = cluster.master_of(channel)
    other = next(p for p in cluster.master_ports() if p != owner)
    on_owner = _subscriber(owner, channel, sharded=True)
    classic_elsewhere = _subscriber(other, channel, sharded=False)
    redis.RedisCluster(host="127.0.0.1", port=owner).spublish(channel, b"sharded")
    assert _next(on_owner)["data"] == b"sharded"
    assert _next(classic_elsewhere, timeout=0.5) is None, "a sharded message stays on its shard"
    redis.Redis(port=owner).publish(channel, b"classic")
    assert _next(classic_elsewhere)["data"] == b"classic", "classic pub/sub copies to every node"
    with pytest.raises(redis.exceptions.MovedError):
        redis.Redis(port=other).execute_command("SSUBSCRIBE", channel)


def test_killed_master_is_replaced_by_its_replica(cluster):
    """Kill the master of a room's slot: a replica is promoted, and the slot is served again."""
    channel = "rt:room.failover"
    owner = cluster.master_of(channel)
    cluster.kill(owner)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            new_owner = cluster.master_of(channel)
        except (redis.RedisError, LookupError):
            new_owner = owner
        if new_owner != owner:
            break
        time.sleep(0.2)
    assert new_owner != owner, "a replica took over the slot"
    cluster.wait_ok(replicas=2)  # the killed master's replica is a master now
    subscriber = _subscriber(new_owner, channel, sharded=True)
    redis.RedisCluster(host="127.0.0.1", port=new_owner).spublish(channel, b"after failover")
    assert _next(subscriber)["data"] == b"after failover"
