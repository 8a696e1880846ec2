"""The extension surface: an app's real-time protocol in one module of its own.

An app adds ``realtime_features.py`` (discovered at start-up the way ``admin.py`` is)
and declares, on a :class:`Feature`:

* the client message types it handles, with their fields and a permission check —
  ``@feature.handles("react", fields=(...), permission=...)`` for a handler that gets a
  :class:`Context`, or ``feature.message("join", ...)`` for a type its own consumer
  handles (the chat's ``ChatConsumer`` keeps each socket's rooms);
* the server events it sends (documented in docs/protocol.md like the core's) —
  ``feature.event("reaction", ...)``;
* how its domain errors become ``error`` frames — ``feature.maps_error(ChatError, ...)``;
* what a socket joining a room should receive from it — ``@feature.on_join``;
* optional Celery tasks, in its own ``tasks.py`` as usual.

Types go into the same registry as the core's, after the core's: nobody can shadow
``ping`` or another app's type (registration raises), and unknown types stay rejected.
Handlers and permissions get a :class:`Context`, not the consumer: what a feature may do
is what the context offers, and the context asks the socket only what
:class:`FeatureHost` declares.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from realtime.protocol import ErrorCode, Field, MessageSpec, ProtocolError, registry

Handler = Callable[["Context", dict[str, Any]], Awaitable[None]]
Permission = Callable[["Context", dict[str, Any]], Awaitable[bool] | bool]
JoinHook = Callable[["Context", str, list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]
#: ``hook(ctx, room, value, history) -> [events]``: sync, run in the join's one database call.
JoinLoad = Callable[["Context", str, Any, list[dict[str, Any]]], list[dict[str, Any]]]
ErrorMapper = Callable[[Any], ProtocolError]


class FeatureHost(Protocol):
    """What a socket offers the features: realtime.consumer.ProtocolConsumer implements it."""

    user: Any

    def rooms_joined(self) -> Collection[str]:
        """The rooms this socket has joined (an app's consumer says; none by default)."""
        ...

    def room_value(self, room: str) -> Any:
        """An opaque per-room value the app's consumer keeps for a joined room (the chat: its Room)."""
        ...

    async def send_event(self, event: dict[str, Any]) -> None:
        """Send one event to this socket."""
        ...


class Context:
    """What a feature handler may use: the user, the joined rooms, sending to this socket."""

    __slots__ = ("_host",)

    def __init__(self, host: FeatureHost) -> None:
        self._host = host

    @property
    def user(self) -> Any:
        """The authenticated user of this socket."""
        return self._host.user

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this socket has joined."""
        return frozenset(self._host.rooms_joined())

    def joined_room(self, room: str) -> Any:
        """The joined room's value as the join loaded it (None if not joined); saves a query."""
        return self._host.room_value(room)

    def require_joined(self, room: str) -> None:
        """Refuse (``not_joined``) unless this socket joined ``room``."""
        if room not in self._host.rooms_joined():
            raise ProtocolError(ErrorCode.NOT_JOINED, "join the room first", room=room)

    async def send(self, event: dict[str, Any]) -> None:
        """Send an event to this socket only."""
        await self._host.send_event(event)


@dataclass
class Feature:
    """A named set of message types, events, error maps and hooks, registered into the protocol."""

    name: str
    doc: str = ""
    #: Static JavaScript modules the chat page loads for this feature's UI.
    scripts: tuple[str, ...] = ()
    handlers: dict[str, Handler] = field(default_factory=dict)
    permissions: dict[str, Permission] = field(default_factory=dict)
    join_hooks: list[JoinHook] = field(default_factory=list)

    def message(
        self,
        type: str,
        *,
        fields: tuple[Field, ...] = (),
        doc: str = "",
        example: dict[str, Any] | None = None,
        permission: Permission | None = None,
        rate_limited: bool = True,
    ) -> MessageSpec:
        """Register a client message type that the app's own consumer handles (its ``handlers``)."""
        spec = registry.register(
            MessageSpec(type, fields, doc=doc, example=example or {"type": type}, rate_limited=rate_limited,
                        owner=self.name)
        )
        if permission is not None:
            self.permissions[type] = permission
            _permissions[type] = permission
        return spec

    def handles(
        self,
        type: str,
        *,
        fields: tuple[Field, ...] = (),
        doc: str = "",
        example: dict[str, Any] | None = None,
        permission: Permission | None = None,
        rate_limited: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Register a client message type and its handler (``async def handler(ctx, payload)``)."""

        def decorator(handler: Handler) -> Handler:
            self.message(type, fields=fields, doc=doc, example=example, permission=permission,
                         rate_limited=rate_limited)
            self.handlers[type] = handler
            _handlers[type] = (self, handler)
            return handler

        return decorator

    def event(self, type: str, *, doc: str = "", example: dict[str, Any] | None = None) -> None:
        """Document a server event this feature sends."""
        registry.register_event(MessageSpec(type, doc=doc, example=example or {}, owner=self.name))

    def maps_error(self, error: type[Exception], to: ErrorMapper) -> None:
        """Report ``error`` (and its subclasses), raised by a handler, as the ``error`` frame ``to(exc)``."""
        if any(error is known for known, _ in _error_maps):
            raise ValueError(f"{error.__name__} is already mapped")
        _error_maps.append((error, to))

    def on_join(self, hook: JoinHook) -> JoinHook:
        """``async def hook(ctx, room, history_events) -> [events]``: sent after a join's history."""
        self.join_hooks.append(hook)
        _join_hooks.append(hook)
        return hook

    def on_join_load(self, hook: JoinLoad) -> JoinLoad:
        """``def hook(ctx, room, value, history_events) -> [events]``: a snapshot read from the database.

        Sync: it runs in the same database call as the join's own reads (one thread hop
        per join for every feature together, not one each); ``value`` is the app's value
        for the room (the chat: its Room) as that call loaded it. Sent after the history.
        """
        _join_loads.append(hook)
        return hook


_handlers: dict[str, tuple[Feature, Handler]] = {}
_permissions: dict[str, Permission] = {}
_join_hooks: list[JoinHook] = []
_join_loads: list[JoinLoad] = []
_error_maps: list[tuple[type[Exception], ErrorMapper]] = []
_features: dict[str, Feature] = {}


def feature(name: str, *, doc: str = "", scripts: tuple[str, ...] = ()) -> Feature:
    """Declare a feature (once per name); its module then registers types, events and hooks on it."""
    if name in _features or name == "core":
        raise ValueError(f"feature {name!r} is already declared")
    _features[name] = Feature(name=name, doc=doc, scripts=scripts)
    return _features[name]


def scripts() -> list[str]:
    """Every feature's page scripts, in declaration order."""
    return [src for f in _features.values() for src in f.scripts]


def handler_for(type: str) -> tuple[Feature, Handler] | None:
    """The feature handling a client message type with a Context handler, if any."""
    return _handlers.get(type)


async def permit(host: FeatureHost, type: str, payload: dict[str, Any]) -> None:
    """Run the permission declared for ``type``, if any: it may raise, or refuse (``forbidden``)."""
    permission = _permissions.get(type)
    if permission is None:
        return
    allowed = permission(Context(host), payload)
    if hasattr(allowed, "__await__"):
        allowed = await allowed
    if not allowed:
        raise ProtocolError(ErrorCode.FORBIDDEN, "not allowed")


async def dispatch(host: FeatureHost, type: str, payload: dict[str, Any]) -> bool:
    """Run a feature's handler for ``type``; False if no feature has one.

    The permission is the caller's to check first (``permit``), as the consumer does
    for every type.
    """
    found = _handlers.get(type)
    if found is None:
        return False
    await found[1](Context(host), payload)
    return True


def protocol_error(exc: Exception) -> ProtocolError | None:
    """The ``error`` frame a feature declared for this exception (``maps_error``); None: not a domain error."""
    for error, to in _error_maps:
        if isinstance(exc, error):
            return to(exc)
    return None


async def joined(host: FeatureHost, room: str, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events every feature adds after a socket joined ``room`` (and got ``history``)."""
    ctx = Context(host)
    extra: list[dict[str, Any]] = []
    for hook in _join_hooks:
        extra.extend(await hook(ctx, room, history))
    return extra


def joined_load(host: FeatureHost, room: str, value: Any, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sync: the events of every feature's ``on_join_load`` snapshot (call it in the join's database call)."""
    ctx = Context(host)
    extra: list[dict[str, Any]] = []
    for hook in _join_loads:
        extra.extend(hook(ctx, room, value, history))
    return extra


def autodiscover() -> None:
    """Import every installed app's ``realtime_features`` module (called from AppConfig.ready)."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("realtime_features")
