"""ASGI routing that hands over the routed application instead of waiting inside it.

channels' ``ProtocolTypeRouter``, ``URLRouter`` and the function ``as_asgi`` returns
each end with ``return await app(scope, receive, send)``. For a WebSocket that await
lasts as long as the socket: three coroutine frames per open socket, and with them
Daphne's original scope, the router's copy of it and its URL match, a good part of an
idle socket's memory (bench/fanout S0; docs/performance.md). The routers here route exactly the same way but return
the routed application's coroutine, so the connection's task runs it directly.

Their ``__call__`` is a plain function marked as a coroutine function
(``asgiref.sync.markcoroutinefunction``): to ASGI servers and to channels' test
communicators they are ordinary ASGI 3 applications.

They stand in for channels' routers only as the patch ``routers`` of realtime.accel
(realtime/asgi.py picks them): on another channels release, or with ``REALTIME_ACCEL=0``,
channels' own serve.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from asgiref.sync import markcoroutinefunction
from channels import routing
from django.urls.exceptions import Resolver404


class ProtocolTypeRouter(routing.ProtocolTypeRouter):
    """channels' ``ProtocolTypeRouter``, returning the chosen application's coroutine."""

    @markcoroutinefunction
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        application = self.application_mapping.get(scope["type"])
        if application is None:
            raise ValueError(f"No application configured for scope type {scope['type']!r}")
        return application(scope, receive, send)


class URLRouter(routing.URLRouter):
    """channels' ``URLRouter`` (same patterns, ``url_route`` and ``root_path``), returning the route's coroutine."""

    @markcoroutinefunction
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        path = scope.get("path_remaining", scope.get("path", None))
        if path is None:
            raise ValueError("No 'path' key in connection scope, cannot route URLs")
        if "path_remaining" not in scope:
            # The outermost router: handle root_path if present.
            root_path = scope.get("root_path", "")
            if root_path and not path.startswith(root_path):
                raise ValueError(f"No route found for path {path!r}.")
            path = path[len(root_path) :]
        path = path.lstrip("/")  # as Django matches
        for route in self.routes:
            try:
                match = route.pattern.match(path)
                if match:
                    new_path, args, kwargs = match
                    kwargs.update(route.default_args)
                    outer = scope.get("url_route", {})
                    routed = dict(
                        scope,
                        path_remaining=new_path,
                        url_route={
                            "args": outer.get("args", ()) + args,
                            "kwargs": {**outer.get("kwargs", {}), **kwargs},
                        },
                    )
                    # A nested router of this module raises Resolver404 here, as channels' would.
                    return route.callback(routed, receive, send)
            except Resolver404:
                pass
        if "path_remaining" in scope:
            raise Resolver404(f"No route found for path {path!r}.")
        raise ValueError(f"No route found for path {path!r}.")
