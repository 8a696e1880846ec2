"""manage.py chat_client: a terminal client that joins, prints, sends, and confirms."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.services import ROOT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def run_client(app_env, daphne, *args: str, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "chat_client", *args, "--url", f"{daphne.ws_url}/ws/chat/"],
        input=stdin, cwd=ROOT, env=app_env, capture_output=True, text=True, timeout=60,
    )


def test_typed_lines_become_messages_and_frames_print_readably(app_env, daphne, make_user, lobby):
    """Piped lines are sent once each and confirmed; the output shows join, messages and errors readably."""
    from chat.models import Message

    make_user("alice")
    result = run_client(app_env, daphne, "lobby", "--user", "alice",
                        stdin="hello from the terminal\n/raw {\"type\":\"nope\"}\nsecond line\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "* joined #lobby at seq 0" in out
    assert "<alice> hello from the terminal  (seq 1)" in out
    assert "<alice> second line  (seq 2)" in out
    assert "! error unknown_type: unknown message type" in out
    assert "not confirmed" not in out
    assert list(Message.objects.order_by("seq").values_list("body", flat=True)) == [
        "hello from the terminal", "second line"]


def test_raw_mode_prints_json_frames_and_unknown_users_are_refused(app_env, daphne, make_user, lobby):
    """--raw prints each frame as JSON; a user that does not exist is a clear error."""
    make_user("bob")
    result = run_client(app_env, daphne, "lobby", "--user", "bob", "--raw", stdin="/ping\n")
    assert result.returncode == 0, result.stderr
    assert '{"type": "hello", "user": "bob"' in result.stdout
    assert '"type": "joined"' in result.stdout
    refused = run_client(app_env, daphne, "lobby", "--user", "nobody", stdin="")
    assert refused.returncode != 0 and "no active user 'nobody'" in refused.stderr


def test_an_unreachable_server_is_reported_and_retried_with_backoff(app_env, make_user, lobby):
    """With nothing listening, the client says why each connect failed and how long it waits; it still exits at EOF."""
    from tests.services import free_port

    make_user("carol")
    result = subprocess.run(
        [sys.executable, "manage.py", "chat_client", "lobby", "--user", "carol", "--wait", "2",
         "--url", f"ws://127.0.0.1:{free_port()}/ws/chat/"],
        input="", cwd=ROOT, env=app_env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "! connection failed: ConnectionRefusedError" in out
    assert "~ disconnected (None); reconnecting in" in out
    assert "! not joined yet" in out and "* connected" not in out
