"""The echo endpoint behind the /echo/ page (the article's example, served by us).

Text frames come back as text and binary frames as binary, unchanged. No login is
needed, but the Origin must be one of ours (``OriginGuard`` in ``realtime.asgi``).
"""

from __future__ import annotations

from realtime.consumer import LayerlessConsumer


class EchoConsumer(LayerlessConsumer):
    """Echo every frame back as it came."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Send the frame back: text as text, binary as binary."""
        if text_data is not None:
            await self.send(text_data=text_data)
        elif bytes_data is not None:
            await self.send(bytes_data=bytes_data)
