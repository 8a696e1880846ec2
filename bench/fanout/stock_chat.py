"""The stock Channels tutorial chat consumer, kept here as the benchmark's reference.

This is the consumer from the Channels tutorial ("Rewrite chat server as asynchronous"),
unchanged but for the room coming from the ``room`` URL kwarg: ``group_add`` and
``accept`` on connect, ``json.loads`` then ``group_send`` on receive, and one
``json.dumps`` + ``send`` per member in ``chat_message``. It runs on the same Daphne,
settings and versions as the project, plus the ``RedisChannelLayer`` that only it needs
(:mod:`stock_settings`); the ASGI application is :mod:`stock_asgi` next to this file.

``StockEchoConsumer`` is the plain ``AsyncWebsocketConsumer`` echo for scenario S1.
"""

from __future__ import annotations

import json

from channels.generic.websocket import AsyncWebsocketConsumer


class ChatConsumer(AsyncWebsocketConsumer):
    """The tutorial's ``chat/consumers.py``, async version."""

    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room"]
        self.room_group_name = f"chat_{self.room_name}"

        # Join room group
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)

        await self.accept()

    async def disconnect(self, close_code):
        # Leave room group
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    # Receive message from WebSocket
    async def receive(self, text_data):
        text_data_json = json.loads(text_data)
        message = text_data_json["message"]

        # Send message to room group
        await self.channel_layer.group_send(self.room_group_name, {"type": "chat.message", "message": message})

    # Receive message from room group
    async def chat_message(self, event):
        message = event["message"]

        # Send message to WebSocket
        await self.send(text_data=json.dumps({"message": message}))


class StockEchoConsumer(AsyncWebsocketConsumer):
    """Echo every text frame back (the stock ``AsyncWebsocketConsumer``, no layer)."""

    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data, bytes_data=bytes_data)
