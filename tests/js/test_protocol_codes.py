"""static/js/protocol-codes.js: the browser's close and error codes are generated from realtime.protocol, once."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from realtime.management.commands.protocol_docs import JS, render_js
from realtime.protocol import CLOSE_CODE_DOCS, ERROR_CODE_DOCS, NO_RECONNECT, CloseCode, ErrorCode
from tests.services import ROOT

STATIC_JS = ROOT / "static" / "js"
# A close code or an error code compared or sent as a literal, instead of by its name.
_ERRORS = "|".join(re.escape(code) for code in ERROR_CODE_DOCS)
LITERAL = re.compile(rf"""(?:===|!==|==|!=)\s*(?:[14]\d{{3}}\b|"(?:{_ERRORS})")|\.close\(\s*[14]\d{{3}}\b""")


def test_the_generated_module_is_what_the_protocol_says():
    """The committed file equals a fresh rendering: a code added to realtime/protocol.py without regenerating fails."""
    assert JS.read_text() == render_js(), "static/js/protocol-codes.js is stale: run `manage.py protocol_docs`"


def test_node_reads_the_same_codes_python_defines():
    """Imported by Node, the module's CloseCode, ErrorCode and NO_RECONNECT are realtime.protocol's values."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is required (Debian package nodejs)")
    script = (
        "import * as c from './static/js/protocol-codes.js';"
        "process.stdout.write(JSON.stringify({close: c.CloseCode, error: c.ErrorCode,"
        " final: [...c.NO_RECONNECT].sort(), frozen: Object.isFrozen(c.CloseCode) && Object.isFrozen(c.ErrorCode)}));"
    )
    run = subprocess.run([node, "--input-type=module", "-e", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["close"] == {k: v for k, v in vars(CloseCode).items() if k.isupper()}
    assert set(got["close"].values()) == set(CLOSE_CODE_DOCS)
    assert got["error"] == {k: v for k, v in vars(ErrorCode).items() if k.isupper()}
    assert got["final"] == sorted(NO_RECONNECT) and got["frozen"] is True


def test_no_other_script_types_a_code_as_a_literal():
    """The page scripts name codes through protocol-codes.js: no `=== 4001` or `=== "rate_limited"` left."""
    found = []
    for path in sorted(STATIC_JS.rglob("*.js")):
        if path == JS or path.name == "msgpack.js":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if LITERAL.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
