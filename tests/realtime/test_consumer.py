"""realtime.consumer's ``pipeline``: a frame that finishes in the background holds up neither the
socket's next frames (up to its limit) nor its error report.

(The rest of the consumer is proven through the full stack: tests/chat/test_consumers.py,
tests/security.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from realtime.consumer import PIPELINE_MAX, ProtocolConsumer, _frame_context
from realtime.protocol import ErrorCode, ProtocolError


class Recorder(ProtocolConsumer):
    """A consumer whose sent events are kept (no socket under it)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any]] = []

    async def send_event(self, event: dict[str, Any]) -> None:
        self.sent.append(event)


async def test_the_socket_waits_only_once_its_limit_of_unfinished_frames_is_reached() -> None:
    """PIPELINE_MAX - 1 unfinished frames: the next frame is read at once; at the limit it waits
    until one of them ends."""
    consumer = Recorder()
    loop = asyncio.get_running_loop()
    gates = [loop.create_future() for _ in range(PIPELINE_MAX)]

    async def until(gate: asyncio.Future) -> None:
        await gate

    for gate in gates[:-1]:
        await asyncio.wait_for(consumer.pipeline(until(gate)), 1)
    last = loop.create_task(consumer.pipeline(until(gates[-1])))
    await asyncio.sleep(0.05)
    assert not last.done()
    gates[3].set_result(None)
    await asyncio.wait_for(last, 1)
    for gate in gates:
        if not gate.done():
            gate.set_result(None)
    await asyncio.sleep(0)
    assert consumer.sent == []


async def test_a_frame_that_fails_in_the_background_reports_its_own_type_and_client_id() -> None:
    """The error event a late failure sends carries the frame it belongs to, not the one being read now."""
    consumer = Recorder()

    async def refused() -> None:
        await asyncio.sleep(0.01)
        raise ProtocolError(ErrorCode.FORBIDDEN, "no")

    token = _frame_context.set({"request_type": "message", "client_id": "late-1"})
    try:
        await consumer.pipeline(refused())
    finally:
        _frame_context.reset(token)
    token = _frame_context.set({"request_type": "typing", "client_id": "now"})  # the frame being read meanwhile
    await asyncio.sleep(0.05)
    _frame_context.reset(token)
    assert consumer.sent == [{"type": "error", "code": "forbidden", "detail": "no", "request_type": "message",
                              "client_id": "late-1"}]


async def test_a_drain_waits_for_the_sockets_frames_still_finishing() -> None:
    """Shutdown: the messages a closing socket is still writing (``pipeline``) finish before the
    drain returns, so the stop that follows flushes their broadcasts instead of cutting them off."""
    from realtime.runtime import Runtime

    class Closing(Recorder):
        async def close(self, code: int | None = None, reason: str | None = None) -> None:
            self._closing = True

    consumer = Closing()
    finished: list[str] = []

    async def write() -> None:
        await asyncio.sleep(0.3)
        finished.append("written")

    await consumer.pipeline(write())
    runtime = Runtime(asyncio.get_running_loop())
    runtime.sockets.add(consumer)
    assert await runtime.drain(4000, flush=0) == 1
    assert finished == ["written"]
