"""The ASGI application: HTTP through Django, WebSockets through the routes below.

Read each WebSocket route from the outside in: admission (the process's handshake
budget, realtime.admission), Origin check, then authentication
(session cookie or ticket), then the consumer. Both run before accept. The routers are
channels' own, except that they hand over the routed application rather than wait in
it for the socket's whole life (realtime.routing): the patch ``routers`` of
realtime.accel, installed here; off, channels' routers serve.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")
django_asgi_app = get_asgi_application()

from channels.security.websocket import WebsocketDenier  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from chat.consumers import ChatConsumer  # noqa: E402
from realtime import accel, drain  # noqa: E402
from realtime.echo import EchoConsumer  # noqa: E402
from realtime.handshake import AdmissionGuard, HandshakeAuth, OriginGuard  # noqa: E402
from realtime.longpoll import LongPollConsumer  # noqa: E402

accel.install()  # before the consumers' as_asgi below: they ask which path to take
if accel.active("routers"):
    from realtime.routing import ProtocolTypeRouter, URLRouter
else:
    from channels.routing import ProtocolTypeRouter, URLRouter

websocket_urlpatterns = [
    path("ws/echo/", OriginGuard(EchoConsumer.as_asgi())),
    path("ws/chat/", AdmissionGuard(HandshakeAuth(ChatConsumer.as_asgi()))),
    # Any other path is refused with 403 rather than failing inside the router.
    re_path(r"", WebsocketDenier.as_asgi()),
]

http_urlpatterns = [
    # The long-polling fallback transport runs the chat consumer over HTTP (realtime/longpoll.py).
    path("rt/lp/<str:action>/", LongPollConsumer.as_asgi()),
    re_path(r"", django_asgi_app),
]

# Under Daphne: close every socket with 4000 "going away" on SIGTERM, before Daphne cancels them.
drain.install_for_daphne()

application = ProtocolTypeRouter(
    {
        "http": URLRouter(http_urlpatterns),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
