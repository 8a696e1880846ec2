"""ASGI application for the stock tutorial chat (the tutorial's ``mysite/asgi.py``).

    DJANGO_SETTINGS_MODULE=bench.fanout.stock_settings daphne -b 127.0.0.1 -p PORT bench.fanout.stock_asgi:application

Only ``CHANNEL_LAYERS`` matters from the settings (:mod:`stock_settings`: the project's
and a channel layer); run.py gives it its own Redis.
Routes: ``ws/stock/<room>/`` (the chat) and ``ws/stock-echo/`` (S1's echo).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.fanout.stock_settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from bench.fanout.stock_chat import ChatConsumer, StockEchoConsumer  # noqa: E402

websocket_urlpatterns = [
    path("ws/stock/<str:room>/", ChatConsumer.as_asgi()),
    path("ws/stock-echo/", StockEchoConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
