"""The extension surface: a real-time feature in one module of its app, no consumer edits.

An app adds ``realtime_features.py`` (discovered at start-up the way ``admin.py`` is)
and declares, on a :class:`Feature`:

* the client message types it handles, with their fields and a permission check —
  ``@feature.handles("react", fields=(...), permission=...)``;
* the server events it sends (documented in docs/protocol.md like the core's) —
  ``feature.event("reaction", ...)``;
* what a socket joining a room should receive from it — ``@feature.on_join``;
* optional Celery tasks, in its own ``tasks.py`` as usual.

Types go into the same registry as the core's, after the core's: a feature cannot
shadow ``join`` or ``message`` (registration raises), and unknown types stay rejected.
Handlers get a :class:`Context`, not the consumer: what a feature may do is what the
context offers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from realtime.protocol import ErrorCode, Field, MessageSpec, ProtocolError, registry

Handler = Callable[["Context", dict[str, Any]], Awaitable[None]]
Permission = Callable[["Context", dict[str, Any]], Awaitable[bool] | bool]
JoinHook = Callable[["Context", str, list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


class Context:
    """What a feature handler may use: the user, the joined rooms, sending, broadcasting."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer

    @property
    def user(self) -> Any:
        """The authenticated user of this socket."""
        return self._consumer.user

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this socket has joined."""
        return frozenset(getattr(self._consumer, "rooms", {}))

    def joined_room(self, room: str) -> Any:
        """The joined room's model as the join loaded it (None if not joined); saves a query."""
        return getattr(self._consumer, "room_models", {}).get(room)

    def require_joined(self, room: str) -> None:
        """Refuse (``not_joined``) unless this socket joined ``room``."""
        if room not in self.rooms:
            raise ProtocolError(ErrorCode.NOT_JOINED, "join the room first", room=room)

    async def send(self, event: dict[str, Any]) -> None:
        """Send an event to this socket only."""
        await self._consumer.send_event(event)


@dataclass
class Feature:
    """A named set of message types, events and hooks, registered into the protocol."""

    name: str
    doc: str = ""
    #: Static JavaScript modules the chat page loads for this feature's UI.
    scripts: tuple[str, ...] = ()
    handlers: dict[str, Handler] = field(default_factory=dict)
    permissions: dict[str, Permission] = field(default_factory=dict)
    join_hooks: list[JoinHook] = field(default_factory=list)

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
            registry.register(
                MessageSpec(type, fields, doc=f"{doc} *(feature: {self.name})*", example=example or {"type": type},
                            rate_limited=rate_limited)
            )
            self.handlers[type] = handler
            if permission is not None:
                self.permissions[type] = permission
            _handlers[type] = (self, handler)
            return handler

        return decorator

    def event(self, type: str, *, doc: str = "", example: dict[str, Any] | None = None) -> None:
        """Document a server event this feature sends."""
        registry.register_event(MessageSpec(type, doc=f"{doc} *(feature: {self.name})*", example=example or {}))

    def on_join(self, hook: JoinHook) -> JoinHook:
        """``async def hook(ctx, room, history_events) -> [events]``: sent after a join's history."""
        self.join_hooks.append(hook)
        _join_hooks.append(hook)
        return hook


_handlers: dict[str, tuple[Feature, Handler]] = {}
_join_hooks: list[JoinHook] = []
_features: dict[str, Feature] = {}


def feature(name: str, *, doc: str = "", scripts: tuple[str, ...] = ()) -> Feature:
    """Declare a feature (once per name); its module then registers types, events and hooks on it."""
    if name in _features:
        raise ValueError(f"feature {name!r} is already declared")
    _features[name] = Feature(name=name, doc=doc, scripts=scripts)
    return _features[name]


def scripts() -> list[str]:
    """Every feature's page scripts, in declaration order."""
    return [src for f in _features.values() for src in f.scripts]


def handler_for(type: str) -> tuple[Feature, Handler] | None:
    """The feature handling a client message type, if any."""
    return _handlers.get(type)


async def dispatch(consumer: Any, type: str, payload: dict[str, Any]) -> bool:
    """Run a feature's handler for ``type`` (checking its permission); False if no feature has it."""
    found = _handlers.get(type)
    if found is None:
        return False
    feature, handler = found
    ctx = Context(consumer)
    permission = feature.permissions.get(type)
    if permission is not None:
        allowed = permission(ctx, payload)
        if hasattr(allowed, "__await__"):
            allowed = await allowed
        if not allowed:
            raise ProtocolError(ErrorCode.FORBIDDEN, "not allowed")
    await handler(ctx, payload)
    return True


async def joined(consumer: Any, room: str, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events every feature adds after a socket joined ``room`` (and got ``history``)."""
    ctx = Context(consumer)
    extra: list[dict[str, Any]] = []
    for hook in _join_hooks:
        extra.extend(await hook(ctx, room, history))
    return extra


def autodiscover() -> None:
    """Import every installed app's ``realtime_features`` module (called from AppConfig.ready)."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("realtime_features")
