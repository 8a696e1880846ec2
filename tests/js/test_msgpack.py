"""The browser's MessagePack codec is the pinned npm package, served as static files.

static/js/msgpack.js only configures ``@msgpack/msgpack`` (package.json): these tests
prove the package is the pinned one, that the pages find it (the import map in
templates/base.html, WhiteNoise in development, collectstatic for production), and
that a real browser talks ``chat.v1.msgpack`` with it end to end. The byte-level
cross-check against Python's ``msgpack`` is in tests/js/test_node.py.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from tests.browser.login import submit_login
from tests.services import ROOT

PACKAGE = ROOT / "node_modules" / "@msgpack" / "msgpack"
IMPORT = re.compile(r"""(?:import|export)\s[^;]*?from\s+"(\.{1,2}/[^"]+)";""")


@pytest.fixture(scope="module")
def installed() -> Path:
    if not (PACKAGE / "package.json").exists():
        pytest.fail("node_modules/@msgpack/msgpack is missing: run bin/bootstrap (it runs `npm ci`)")
    return PACKAGE


def test_installed_package_is_the_pinned_version(installed: Path) -> None:
    """package.json pins one exact version; the lock and node_modules hold exactly it."""
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["@msgpack/msgpack"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"not an exact pin: {pinned}"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@msgpack/msgpack"]["version"] == pinned
    assert json.loads((installed / "package.json").read_text())["version"] == pinned


def test_client_codec_is_the_package_not_a_copy(installed: Path) -> None:
    """static/js/msgpack.js hands out the package's own decode, and its encode writes what the package writes."""
    node = shutil.which("node")
    assert node, "node is required (Debian package nodejs)"
    script = (
        "import * as ours from './static/js/msgpack.js';"
        "import * as pkg from '@msgpack/msgpack';"
        "const v = {type: 'message', seq: 2 ** 40, body: 'héllo ✓', list: [1, -70000, 1.5, null]};"
        "const same = Buffer.compare(Buffer.from(ours.encode(v)), Buffer.from(pkg.encode(v))) === 0;"
        "const dropped = ours.decode(ours.encode({a: 1, gone: undefined}));"
        "process.stdout.write(JSON.stringify({decode: ours.decode === pkg.decode, same, dropped}));"
    )
    result = subprocess.run([node, "--input-type=module", "-e", script], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"decode": True, "same": True, "dropped": {"a": 1}}


def _module_graph(root: Path, entry: str) -> set[str]:
    """Every file the ES module ``entry`` (relative to ``root``) imports, itself included."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        text = (root / name).read_text()
        todo += [posixpath.normpath(posixpath.join(posixpath.dirname(name), spec)) for spec in IMPORT.findall(text)]
    return seen


@pytest.mark.django_db
def test_pages_import_map_names_a_served_module(installed: Path) -> None:
    """The import map on every page points at the package's ES module; it and each file it imports is served as JS."""
    page = Client().get("/accounts/login/").content.decode()
    found = re.search(r'<script type="importmap">(.*?)</script>', page, re.S)
    assert found, "templates/base.html has no import map"
    url = json.loads(found.group(1))["imports"]["@msgpack/msgpack"]
    assert url == "/static/vendor/msgpack/index.mjs"
    files = _module_graph(installed / "dist.esm", "index.mjs")
    assert {"index.mjs", "encode.mjs", "decode.mjs", "utils/utf8.mjs"} <= files
    client = Client()
    for name in sorted(files):
        response = client.get(f"/static/vendor/msgpack/{name}")
        assert response.status_code == 200, name
        assert response["Content-Type"].startswith("text/javascript"), (name, response["Content-Type"])


def test_collectstatic_gathers_the_package_for_production(installed: Path, tmp_path: Path, settings: Any) -> None:
    """collectstatic (``make run``, the production image) copies the module tree where WhiteNoise serves it."""
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    call_command("collectstatic", "--noinput", verbosity=0)
    for name in _module_graph(installed / "dist.esm", "index.mjs"):
        assert (tmp_path / "vendor" / "msgpack" / name).is_file(), name
    assert (tmp_path / "js" / "msgpack.js").is_file()


@pytest.mark.browser
@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_browser_talks_msgpack_end_to_end(browser: Any, daphne: Any, make_user: Any, lobby: Any) -> None:
    """Two Chromium pages negotiate chat.v1.msgpack, send binary frames, and each shows the other's non-ASCII text."""
    make_user("alice"), make_user("bob")
    pages = []
    frames: list[Any] = []
    try:
        for name in ("alice", "bob"):
            context = browser.new_context()
            page = context.new_page()
            page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(f)))
            submit_login(page, daphne.url, name)
            page.wait_for_function("() => document.querySelector('#conn-status').dataset.state === 'connected'")
            assert page.evaluate("() => window.chatClient.transport.ws.protocol") == "chat.v1.msgpack"
            pages.append(page)
        alice, bob = pages
        for sender, receiver, text in ((alice, bob, "héllo ✓ from alice"), (bob, alice, "ça va? 🎉")):
            sender.fill("#body", text)
            sender.press("#body", "Enter")
            receiver.wait_for_function(
                "(t) => [...document.querySelectorAll('#messages li .body')].some(b => b.textContent === t)", arg=text)
        assert frames and all(isinstance(f, bytes) for f in frames), "every frame the server sent is binary"
    finally:
        for page in pages:
            page.context.close()
