"""Every patch of a third-party internal the project makes, in one list, each gated by version.

Daphne, autobahn, Twisted and channels are pinned (requirements.txt). Parts of them are
replaced for speed and memory (docs/performance.md says what each one buys): those
replacements lean on internals that no release promises to keep. So each one is named
in :data:`PATCHES` with the releases it was written and checked against, and
:func:`install` applies it only when the installed release is one of those. On any
other release the stock code runs, and one warning at start-up says which patches were
skipped and why. ``REALTIME_ACCEL=0`` in the environment turns every one of them off.

``make conformance`` (bin/conformance) runs Daphne's and autobahn's own test suites
against the patched code; widen a range below only after it passes on the new release.

The server (``python -m realtime.server``) and the ASGI application (``realtime.asgi``)
call :func:`install` when they start; code that asks :func:`active` first installs too,
so a process never mixes the two paths by the order of its imports.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion

logger = logging.getLogger(__name__)

#: The environment variable that turns every patch off ("0", "false", "no" or "off").
SWITCH = "REALTIME_ACCEL"

# The ranges: the release each patch was checked against (make conformance), up to the next
# minor (semantic versions) or the next month (autobahn and Twisted number by date).
DAPHNE = ("daphne", ">=4.2.3,<4.3")
AUTOBAHN = ("autobahn", ">=26.10.2,<26.11")
TWISTED = ("Twisted", ">=26.10.0,<26.11")
CHANNELS = ("channels", ">=4.3.2,<4.4")


@dataclass(frozen=True)
class Patch:
    """One replaced internal: what it is, the releases it was written for, how to apply it."""

    name: str
    #: What it replaces, in a line (the start-up warning and docs/performance.md use it).
    replaces: str
    #: (distribution, version specifier) pairs that must all hold.
    targets: tuple[tuple[str, str], ...]
    #: "module:function" that applies it; None when the patched code only asks active().
    apply: str | None = None


PATCHES: tuple[Patch, ...] = (
    Patch("xor_masker", "autobahn's module-wide XOR masker factory (small client frames)", (AUTOBAHN,),
          "realtime.server:install_xor_masker"),
    Patch("on_message_end", "autobahn's WebSocketProtocol.onMessageEnd (no per-message event)", (AUTOBAHN,),
          "realtime.server:install_on_message_end"),
    Patch("factory_options", "autobahn's per-socket copies of the factory options", (AUTOBAHN, DAPHNE),
          "realtime.server:install_factory_options"),
    Patch("handshake_release", "Twisted's upgraded HTTPChannel and autobahn's handshake kept per socket",
          (TWISTED, AUTOBAHN, DAPHNE), "realtime.server:install_handshake_release"),
    Patch("form_parse_off", "Twisted's parse of form bodies into request.args, unused by Daphne (uploads)",
          (TWISTED, DAPHNE), "realtime.server:install_form_parse_off"),
    Patch("denial_response", "Daphne's handle_reply: ASGI's denial response (503 + Retry-After) before accept",
          (AUTOBAHN, DAPHNE), "realtime.server:install_denial_response"),
    Patch("auto_ping", "autobahn's auto-ping through sendFrame and Twisted's write (one epoll re-arm per ping)",
          (TWISTED, AUTOBAHN, DAPHNE), "realtime.server:install_auto_ping"),
    Patch("app_checker", "Daphne's application_checker walk of every connection every second (only due ones)",
          (DAPHNE, TWISTED), "realtime.server:install_app_checker"),
    Patch("timeout_checker", "Daphne's timeout_checker walk of every connection every 2 s (only due ones)",
          (DAPHNE, AUTOBAHN), "realtime.server:install_timeout_checker"),
    Patch("input_queue", "Daphne's asyncio.Queue per connection (create_application)", (DAPHNE,)),
    Patch("direct_writes", "Twisted's write path for broadcast frames (realtime.wire)", (TWISTED, AUTOBAHN, DAPHNE)),
    Patch("routers", "channels' ProtocolTypeRouter and URLRouter (realtime.routing)", (CHANNELS,)),
    Patch("as_asgi", "channels' as_asgi and AsyncConsumer.__call__ (realtime.consumer)", (CHANNELS,)),
)

_installed = False
_active: frozenset[str] = frozenset()


def switched_off() -> bool:
    """Whether ``REALTIME_ACCEL`` turns every patch off (read from the environment at start-up)."""
    return os.environ.get(SWITCH, "1").strip().lower() in ("0", "false", "no", "off")


def installed_version(distribution: str) -> str | None:
    """The installed release of ``distribution``, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def mismatches(patch: Patch) -> list[str]:
    """Why ``patch`` does not fit what is installed (empty when it does)."""
    found = []
    for distribution, specifier in patch.targets:
        version = installed_version(distribution)
        try:
            fits = version is not None and SpecifierSet(specifier).contains(version, prereleases=True)
        except InvalidVersion:
            fits = False
        if not fits:
            found.append(f"{distribution} {version or 'not installed'} (written for {specifier})")
    return found


def _call(dotted: str) -> None:
    module, _, function = dotted.partition(":")
    getattr(importlib.import_module(module), function)()


def install() -> frozenset[str]:
    """Apply every patch whose targets are installed at a version it was written for; once per process.

    Returns the names of the patches in force. Logs one warning naming the patches left
    out and why (a release outside the range, or an apply function that failed); with
    ``REALTIME_ACCEL=0`` none is applied.
    """
    global _installed, _active
    if _installed:
        return _active
    _installed = True
    if switched_off():
        logger.warning("%s=0: every patch of a third-party internal is off; Daphne, autobahn, Twisted "
                       "and channels run stock", SWITCH)
        return _active
    applied, skipped = [], []
    for patch in PATCHES:
        problems = mismatches(patch)
        if problems:
            skipped.append(f"{patch.name} ({patch.replaces}): {', '.join(problems)}")
            continue
        if patch.apply is not None:
            try:
                _call(patch.apply)
            except Exception as exc:  # an internal missing after all: serve stock, say so
                logger.debug("applying %s failed", patch.name, exc_info=True)
                skipped.append(f"{patch.name} ({patch.replaces}): applying it failed: {exc!r}")
                continue
        applied.append(patch.name)
    _active = frozenset(applied)
    if skipped:
        logger.warning("stock code instead of %d patch(es) of third-party internals (make conformance "
                       "checks them on a new release): %s", len(skipped), "; ".join(skipped))
    return _active


def active(name: str) -> bool:
    """Whether the patch ``name`` is in force in this process (installing first if nothing did)."""
    if not _installed:
        install()
    return name in _active


def reinstall() -> frozenset[str]:
    """Forget what was applied and install again: a process that re-imported a patched module.

    Daphne's test harness re-imports ``daphne.server`` in each forked server process
    (tests/conformance/plugin.py); the patches then go onto the fresh classes.
    """
    global _installed, _active
    _installed, _active = False, frozenset()
    return install()

