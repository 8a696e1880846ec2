"""Graceful drain: on SIGTERM, every open socket is closed with 4000 "going away".

(RFC 6455's 1001 means the same, but Daphne lets applications close only with 1000 or
3000-4999; CloseCode.GOING_AWAY is 4000, documented in docs/protocol.md.)

Clients then reconnect at once (to another process or pod, through the load balancer)
and resume with ``last_seq``, instead of waiting for a dead TCP connection to time out.
Kubernetes sends SIGTERM after the pod's preStop hook (deploy/generated/*/k8s); systemd
and ``make run`` send it on stop.

Daphne runs on Twisted's asyncio reactor; a "before shutdown" trigger registered before
Daphne's own (which cancels every application) closes the sockets first and gives the
close frames a moment to leave.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from typing import Any

from realtime.protocol import CloseCode

logger = logging.getLogger(__name__)

# Every accepted socket of this process (ProtocolConsumer adds itself).
open_sockets: weakref.WeakSet[Any] = weakref.WeakSet()

FLUSH_SECONDS = 0.5
_installed = False


async def drain(code: int = CloseCode.GOING_AWAY) -> int:
    """Close every open socket of this process with ``code``; returns how many."""
    sockets = [s for s in list(open_sockets) if not getattr(s, "_closing", False)]
    for socket in sockets:
        try:
            await socket.close(code, "server going away")
        except Exception:
            logger.warning("drain: closing a socket failed", exc_info=True)
    if sockets:
        logger.warning("drain: closed %d socket(s) with %d", len(sockets), code)
        await asyncio.sleep(FLUSH_SECONDS)
    return len(sockets)


def install_for_daphne() -> bool:
    """Register the drain to run at Daphne's shutdown, before its applications are cancelled."""
    global _installed
    if _installed or "twisted.internet.reactor" not in sys.modules:
        return False
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    def before_shutdown() -> Deferred:
        return Deferred.fromFuture(asyncio.ensure_future(drain()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    _installed = True
    return True
