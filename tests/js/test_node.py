"""The browser client's JavaScript unit tests, and its MessagePack against Python's."""

from __future__ import annotations

import json
import shutil
import subprocess

import msgpack
import pytest

from tests.services import ROOT


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is required for the client's unit tests (Debian package nodejs)")
    return path


def test_client_unit_tests_pass_on_node(node):
    """Backoff schedule, jitter spread over 500 clients, MessagePack and resume bookkeeping."""
    result = subprocess.run([node, "--test", "tests/js/"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout


def test_javascript_msgpack_is_what_python_reads_and_writes(node):
    """Frames encoded by static/js/msgpack.js (the npm package) decode in Python to the same object, and back."""
    event = {"type": "message", "room": "lobby", "seq": 2**40, "id": 7, "body": "héllo ✓", "client_id": None,
             "neg": -200000, "f": 1.5, "ok": True, "list": [1, "two"]}
    script = (
        "import * as m from './static/js/msgpack.js';"
        f"const e = {json.dumps(event)};"
        "process.stdout.write(Buffer.from(m.encode(e)).toString('hex'));"
        "const back = m.decode(Buffer.from(process.argv[1], 'hex'));"
        "process.stderr.write(JSON.stringify(back));"
    )
    packed_by_python = msgpack.packb(event, use_bin_type=True).hex()
    result = subprocess.run(
        [node, "--input-type=module", "-e", script, packed_by_python],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert msgpack.unpackb(bytes.fromhex(result.stdout), raw=False) == event
    assert json.loads(result.stderr) == event
