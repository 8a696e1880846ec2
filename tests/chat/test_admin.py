"""Moderation in the Django admin: staff only, logged, and live in open sockets.

The admin runs synchronously (Django's test Client, in a sync_to_async thread) while the
sockets are WebsocketCommunicators on the real Redis layer in the test's event loop.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.test import Client

from chat import services
from chat.models import Membership, Message, Room
from tests.chat.test_consumers import connect, drain, join, recv

pytestmark = pytest.mark.django_db(transaction=True)

ADMIN_PAGES = [
    "/admin/chat/room/online/",
    "/admin/chat/room/",
    "/admin/chat/membership/",
    "/admin/chat/message/",
    "/admin/",
]


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(make_user, lobby):
    user = make_user("alice")
    services.room_enter(slug="lobby", user=user)
    return user


@pytest.fixture
def bob(make_user, lobby):
    user = make_user("bob")
    services.room_enter(slug="lobby", user=user)
    return user


@pytest.fixture
def moderator(make_user):
    return make_user("mod", is_staff=True, is_superuser=True)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def admin_post(user, path: str, data: dict[str, Any]):
    client = await sync_to_async(logged_in)(user)
    return await sync_to_async(client.post)(path, data)


async def membership_pk(user, room: Room) -> int:
    return (await sync_to_async(Membership.objects.get)(room=room, user=user)).pk


async def log_entries(model, object_id: Any) -> list[LogEntry]:
    def read() -> list[LogEntry]:
        ct = ContentType.objects.get_for_model(model)
        return list(LogEntry.objects.filter(content_type=ct, object_id=str(object_id)).select_related("user"))

    return await sync_to_async(read)()


# --- staff only ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_redirect_non_staff_to_the_admin_login(make_user, path):
    """Anonymous and logged-in non-staff users are sent to the admin login; staff see the page."""
    for client in (Client(), logged_in(make_user("user", is_staff=False))):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/?next=")
    assert logged_in(make_user("mod", is_staff=True, is_superuser=True)).get(path).status_code == 200


async def test_non_staff_cannot_ban_or_kick(alice, bob, lobby, make_user):
    """An action or kick POSTed by a non-staff user does nothing: no ban, no removal, no log."""
    b = await connect(bob)
    await join(b)
    pk = await membership_pk(bob, lobby)
    user = await sync_to_async(make_user)("user")
    for path, data in (
        ("/admin/chat/membership/", {"action": "ban", "_selected_action": [pk], "index": 0}),
        ("/admin/chat/room/online/kick/", {"room": "lobby", "user": "bob"}),
    ):
        response = await admin_post(user, path, data)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert not (await sync_to_async(Membership.objects.get)(pk=pk)).banned
    assert [e for e in await drain(b) if e["type"] == "removed"] == []
    assert await sync_to_async(LogEntry.objects.count)() == 0
    await b.disconnect()


async def test_staff_without_change_permission_cannot_kick_or_ban(alice, bob, lobby, make_user):
    """Staff status alone is not enough: kicking needs the change permission (403), the ban action is not offered."""
    b = await connect(bob)
    await join(b)
    pk = await membership_pk(bob, lobby)
    viewer = await sync_to_async(make_user)("viewer", is_staff=True)
    response = await admin_post(viewer, "/admin/chat/room/online/kick/", {"room": "lobby", "user": "bob"})
    assert response.status_code == 403
    await admin_post(viewer, "/admin/chat/membership/", {"action": "ban", "_selected_action": [pk], "index": 0})
    assert not (await sync_to_async(Membership.objects.get)(pk=pk)).banned
    assert [e for e in await drain(b) if e["type"] == "removed"] == []
    assert await sync_to_async(LogEntry.objects.count)() == 0
    await b.disconnect()


# --- actions, live -------------------------------------------------------------------


async def test_ban_action_removes_the_member_live_and_blocks_rejoining(alice, bob, lobby, moderator):
    """Ban from the changelist: bob's socket gets removed/banned at once, cannot rejoin; the ban is logged."""
    a, b = await connect(alice), await connect(bob)
    await join(a)
    await join(b)
    await drain(a)
    pk = await membership_pk(bob, lobby)
    response = await admin_post(moderator, "/admin/chat/membership/",
                                {"action": "ban", "_selected_action": [pk], "index": 0})
    assert response.status_code == 302
    assert await recv(b, type_="removed") == {"type": "removed", "room": "lobby", "reason": "banned"}
    # Out of the room at once: posting is not_joined, and rejoining is refused.
    await b.send_json_to({"type": "message", "room": "lobby", "body": "still here?"})
    assert (await recv(b, type_="error"))["code"] == "not_joined"
    await b.send_json_to({"type": "join", "room": "lobby"})
    err = await recv(b, type_="error")
    assert (err["code"], err["room"]) == ("banned", "lobby")
    # The others see bob leave, and are not removed themselves.
    seen = await drain(a)
    assert {"type": "presence", "room": "lobby", "joined": [], "left": ["bob"]} in seen
    assert all(e["type"] != "removed" for e in seen)
    assert await sync_to_async(Message.objects.count)() == 0
    [entry] = await log_entries(Membership, pk)
    assert entry.user_id == moderator.pk and entry.action_flag == CHANGE and "Banned" in entry.get_change_message()
    await a.disconnect()
    await b.disconnect()


async def test_unban_action_lets_the_member_join_again(bob, lobby, moderator):
    """Unban: the next join is accepted again; logged."""
    pk = await membership_pk(bob, lobby)
    await sync_to_async(Membership.objects.filter(pk=pk).update)(banned=True)
    b = await connect(bob)
    await b.send_json_to({"type": "join", "room": "lobby"})
    assert (await recv(b, type_="error"))["code"] == "banned"
    await admin_post(moderator, "/admin/chat/membership/", {"action": "unban", "_selected_action": [pk], "index": 0})
    assert (await join(b))["room"] == "lobby"
    assert "Unbanned" in (await log_entries(Membership, pk))[0].get_change_message()
    await b.disconnect()


async def test_remove_messages_action_deletes_live_in_open_sockets(alice, bob, lobby, moderator):
    """Delete from the message changelist: every socket in the room gets message.deleted; logged; tombstoned."""
    a, b = await connect(alice), await connect(bob)
    await join(a)
    await join(b)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "regrettable"})
    await a.send_json_to({"type": "message", "room": "lobby", "body": "fine"})
    posted = [await recv(b, type_="message"), await recv(b, type_="message")]
    bad = next(m for m in posted if m["body"] == "regrettable")
    response = await admin_post(moderator, "/admin/chat/message/",
                                {"action": "remove_messages", "_selected_action": [bad["id"]], "index": 0})
    assert response.status_code == 302
    expected = {"type": "message.deleted", "room": "lobby", "seq": bad["seq"], "id": bad["id"]}
    assert await recv(a, type_="message.deleted") == expected
    assert await recv(b, type_="message.deleted") == expected
    stored = await sync_to_async(Message.objects.get)(pk=bad["id"])
    assert stored.is_deleted
    assert not (await sync_to_async(Message.objects.get)(body="fine")).is_deleted
    [entry] = await log_entries(Message, bad["id"])
    assert entry.user_id == moderator.pk and "Deleted live" in entry.get_change_message()
    # Deleting it again changes nothing, sends nothing and logs nothing.
    await admin_post(moderator, "/admin/chat/message/",
                     {"action": "remove_messages", "_selected_action": [bad["id"]], "index": 0})
    assert [e for e in await drain(b) if e["type"] == "message.deleted"] == []
    assert len(await log_entries(Message, bad["id"])) == 1
    await a.disconnect()
    await b.disconnect()


async def test_online_view_lists_sockets_and_kick_removes_live(alice, bob, lobby, moderator):
    """The online view shows who is in which room; kicking sends removed/kicked, is logged, and allows rejoining."""
    a, b = await connect(alice), await connect(bob)
    await join(a)
    await join(b)
    client = await sync_to_async(logged_in)(moderator)
    page = await sync_to_async(client.get)("/admin/chat/room/online/")
    assert page.status_code == 200
    html = page.content.decode()
    assert '<input type="hidden" name="user" value="bob">' in html
    assert '<input type="hidden" name="room" value="lobby">' in html
    response = await sync_to_async(client.post)("/admin/chat/room/online/kick/", {"room": "lobby", "user": "bob"})
    assert response.status_code == 302 and response["Location"] == "/admin/chat/room/online/"
    assert await recv(b, type_="removed") == {"type": "removed", "room": "lobby", "reason": "kicked"}
    assert all(e["type"] != "removed" for e in await drain(a))
    [entry] = await log_entries(Room, lobby.pk)
    assert entry.user_id == moderator.pk and entry.get_change_message() == "Kicked bob from the room."
    # A kick is not a ban: bob may come back.
    assert (await join(b))["room"] == "lobby"
    page = await sync_to_async(client.get)("/admin/chat/room/online/")
    assert 'value="bob"' in page.content.decode()
    await a.disconnect()
    await b.disconnect()


@pytest.mark.parametrize("data", [{"room": "lobby", "user": "nobody"}, {"room": "nowhere", "user": "bob"},
                                  {"room": "../etc", "user": "bob"}, {}])
async def test_kick_of_unknown_user_or_room_does_nothing(bob, lobby, moderator, data):
    """A kick naming no real user or room removes nobody and logs nothing."""
    b = await connect(bob)
    await join(b)
    response = await admin_post(moderator, "/admin/chat/room/online/kick/", data)
    assert response.status_code == 302
    assert [e for e in await drain(b) if e["type"] == "removed"] == []
    assert await sync_to_async(LogEntry.objects.count)() == 0
    await b.disconnect()


async def test_kick_view_refuses_get(moderator):
    """Kicking is a POST; a GET (a link, a prefetch) does nothing."""
    client = await sync_to_async(logged_in)(moderator)
    assert (await sync_to_async(client.get)("/admin/chat/room/online/kick/")).status_code == 405


async def test_mute_action_stops_posting_and_unmute_restores_it(alice, bob, lobby, moderator):
    """Mute for 10 minutes: the member's next post is muted (nothing stored); unmute lets them post; both logged."""
    b = await connect(bob)
    await join(b)
    pk = await membership_pk(bob, lobby)
    await admin_post(moderator, "/admin/chat/membership/",
                     {"action": "mute_10_minutes", "_selected_action": [pk], "index": 0})
    await b.send_json_to({"type": "message", "room": "lobby", "body": "hello?", "client_id": "m1"})
    err = await recv(b, type_="error")
    assert (err["code"], err["room"], err["client_id"]) == ("muted", "lobby", "m1") and err["until"]
    assert await sync_to_async(Message.objects.count)() == 0
    await admin_post(moderator, "/admin/chat/membership/", {"action": "unmute", "_selected_action": [pk], "index": 0})
    await b.send_json_to({"type": "message", "room": "lobby", "body": "hello again", "client_id": "m1"})
    assert (await recv(b, type_="message"))["body"] == "hello again"
    messages = [e.get_change_message() for e in await log_entries(Membership, pk)]
    assert sorted(messages) == ["Muted for 10 minutes.", "Unmuted."]
    await b.disconnect()
