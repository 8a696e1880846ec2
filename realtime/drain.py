"""Graceful drain: on SIGTERM, every open socket is closed with 4000 "going away".

(RFC 6455's 1001 means the same, but Daphne lets applications close only with 1000 or
3000-4999; CloseCode.GOING_AWAY is 4000, documented in docs/protocol.md.)

Clients then reconnect at once (to another process or pod, through the load balancer)
and resume with ``last_seq``, instead of waiting for a dead TCP connection to time out.
Kubernetes sends SIGTERM after the pod's preStop hook (deploy/generated/*/k8s); systemd
and ``make run`` send it on stop.

Daphne runs on Twisted's asyncio reactor; a "before shutdown" trigger registered before
Daphne's own (which cancels every application) stops the loop's runtime
(realtime.runtime): it closes the sockets, gives the close frames a moment to leave,
then cancels its tasks and closes its Redis connections.
"""

from __future__ import annotations

import asyncio
import sys

from realtime.protocol import CloseCode
from realtime.runtime import runtime

FLUSH_SECONDS = 0.5
_installed = False


async def drain(code: int = CloseCode.GOING_AWAY) -> int:
    """Close every open socket of this loop with ``code``; returns how many."""
    return await runtime().drain(code, flush=FLUSH_SECONDS)


async def shutdown(code: int = CloseCode.GOING_AWAY) -> None:
    """Drain this loop's sockets with ``code`` and stop its runtime (the server is going away)."""
    await runtime().stop(drain_code=code, flush=FLUSH_SECONDS)


def install_for_daphne() -> bool:
    """Register the shutdown to run at Daphne's, before its applications are cancelled."""
    global _installed
    if _installed or "twisted.internet.reactor" not in sys.modules:
        return False
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    def before_shutdown() -> Deferred:
        return Deferred.fromFuture(asyncio.ensure_future(shutdown()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    _installed = True
    return True
