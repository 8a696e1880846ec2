"""Logging in through the real login form, as a person does (shared by the browser tests)."""

from __future__ import annotations

from typing import Any


def submit_login(page: Any, base_url: str, username: str, password: str | None = None) -> Any:
    """Fill and submit ``base_url``'s login form on ``page``; return once it redirected.

    The password defaults to the one ``make_user`` gives (``pw-<name>-123``).
    """
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password if password is not None else f"pw-{username}-123")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/**")
    return page
