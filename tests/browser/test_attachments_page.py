"""Attachments in real Chromium against live Daphne: paste and drop, chips, thumbnails, the lightbox, file cards.

Also the server under an oversized upload: it answers 413 and keeps serving others meanwhile.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.browser.test_chat_page import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"

# Build a File in the page and hand it to the composer as a paste, or to the room as a drop.
_GIVE_FILE = """
([how, name, type, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type }));
  if (how === "paste") {
    const paste = new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true });
    document.getElementById("body").dispatchEvent(paste);
  } else {
    const room = document.querySelector("section.room");
    for (const t of ["dragenter", "dragover", "drop"]) {
      room.dispatchEvent(new DragEvent(t, { dataTransfer: dt, bubbles: true, cancelable: true }));
    }
  }
}
"""


def _photo() -> str:
    image = Image.new("RGB", (640, 400), (40, 110, 200))
    for x in range(0, 640, 40):
        for y in range(0, 400, 40):
            if (x + y) // 40 % 2:
                image.paste((250, 200, 60), (x, y, x + 40, y + 40))
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return base64.b64encode(out.getvalue()).decode()


@pytest.fixture
def people(make_user, lobby):
    from chat import services

    users = make_user("alice"), make_user("bob")
    for user in users:
        services.room_enter(slug="lobby", user=user)
    return users


def _shoot(page: Any, name: str) -> None:
    """The screenshot for the docs (an unwritable docs/ is not a test failure)."""
    png = page.screenshot()
    with contextlib.suppress(OSError):
        (SCREENSHOTS / name).write_bytes(png)


def test_paste_and_drop_send_a_picture_and_a_file_that_others_see(browser, daphne, people):
    """A pasted photo and a dropped HTML page become chips, then one message: a thumbnail (lightbox) and a file card."""
    alice = log_in(browser, daphne, "alice")
    bob = log_in(browser, daphne, "bob")
    try:
        alice.evaluate(_GIVE_FILE, ["paste", "beach.jpg", "image/jpeg", _photo()])
        html = base64.b64encode(b"<!doctype html><script>alert(1)</script>").decode()
        alice.evaluate(_GIVE_FILE, ["drop", "notes.png", "image/png", html])
        alice.wait_for_function("document.querySelectorAll('#attachment-chips .chip.ready').length === 2")
        alice.fill("#body", "holiday pictures and my notes")
        alice.press("#body", "Enter")
        alice.wait_for_function("document.querySelectorAll('#attachment-chips .chip').length === 0")
        for page in (alice, bob):
            page.wait_for_selector("#messages li[data-seq='1'] .attachment-image img")
            page.wait_for_function(
                "(() => { const i = document.querySelector(\"#messages li[data-seq='1'] .attachment-image img\");"
                " return i.complete && i.naturalWidth > 0; })()"
            )
            card = page.inner_text("#messages li[data-seq='1'] .attachment-file")
            assert "notes.png" in card
        # The disguised page is a download (not a picture), and its URL says so.
        href = bob.get_attribute("#messages li[data-seq='1'] .attachment-file", "href")
        response = bob.request.get(f"{daphne.url}{href}")
        assert response.status == 200 and response.headers["content-disposition"].startswith("attachment")
        assert response.headers["x-content-type-options"] == "nosniff"
        # The thumbnail opens the full picture in an accessible dialog; Escape closes it.
        bob.click("#messages li[data-seq='1'] .attachment-image")
        bob.wait_for_selector("#lightbox[open] .lightbox-image")
        bob.wait_for_function("document.querySelector('#lightbox .lightbox-image').naturalWidth === 640")
        _shoot_sizes(bob, "attachments-lightbox")
        bob.keyboard.press("Escape")
        bob.wait_for_selector("#lightbox:not([open])", state="attached")
        # A chip waiting to be sent, for the composer's screenshot; removing it empties the tray.
        bob.evaluate(_GIVE_FILE, ["paste", "sunset.jpg", "image/jpeg", _photo()])
        bob.wait_for_selector("#attachment-chips .chip.ready")
        _shoot_sizes(bob, "attachments")
        bob.click("#attachment-chips .chip-remove")
        bob.wait_for_selector("#attachment-chips", state="hidden")
        # History after a reload carries the attachments too.
        alice.reload()
        alice.wait_for_selector("#messages li[data-seq='1'] .attachment-image img")
    finally:
        alice.context.close()
        bob.context.close()


def _shoot_sizes(page: Any, stem: str) -> None:
    """docs/img/<stem>-{desktop,phone}-{light,dark}.png: 1280x800 and 390x844, both themes."""
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for device, width, height in (("desktop", 1280, 800), ("phone", 390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(100)  # one layout pass
            _shoot(page, f"{stem}-{device}-{scheme}.png")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1100, "height": 700})


def test_an_oversized_upload_gets_413_while_the_server_keeps_serving(daphne, people, settings):
    """A body larger than UPLOAD_MAX_BYTES, sent slowly: 413 JSON, and /healthz answers throughout."""
    from tests.conftest import session_cookie

    cookie = session_cookie(people[0])
    conn = http.client.HTTPConnection("127.0.0.1", daphne.port, timeout=60)
    size = 26 * 1024 * 1024 + 1  # over the default 25 MiB
    conn.putrequest("POST", "/api/rooms/lobby/uploads/")
    conn.putheader("Content-Type", "multipart/form-data; boundary=xyz")
    conn.putheader("Content-Length", str(size))
    conn.putheader("Cookie", f"sessionid={cookie}")
    conn.endheaders()
    served: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            start = time.monotonic()
            probe_conn = http.client.HTTPConnection("127.0.0.1", daphne.port, timeout=10)
            probe_conn.request("GET", "/healthz")
            assert probe_conn.getresponse().status == 200
            probe_conn.close()
            served.append(time.monotonic() - start)
            time.sleep(0.05)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    chunk = b"x" * (1024 * 1024)
    sent = 0
    try:
        while sent < size:
            piece = chunk[: min(len(chunk), size - sent)]
            conn.send(piece)
            sent += len(piece)
        response = conn.getresponse()
        body = response.read()
    finally:
        stop.set()
        prober.join(timeout=15)
        conn.close()
    assert response.status == 413 and b"upload_too_large" in body, body[:300]
    assert served, "the server answered nothing while the upload streamed"
    assert max(served) < 5
