"""Moderation in the Django admin: staff only, logged, and live in open sockets.

The admin runs synchronously (Django's test Client, in a sync_to_async thread) while the
sockets are WebsocketCommunicators on the real Redis layer in the test's event loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.test import Client

from chat import moderation, services
from chat.models import BannedWord, Membership, Message, Room
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


@pytest.fixture(autouse=True)
def _fresh_word_filter():
    """Each test starts and ends with this process's banned-words filter unloaded (the database is flushed)."""
    moderation.word_filter_invalidate()
    yield
    moderation.word_filter_invalidate()


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
    await recv(b, type_="membership")  # the socket re-reads its membership once this event has reached it
    await b.send_json_to({"type": "message", "room": "lobby", "body": "hello?", "client_id": "m1"})
    err = await recv(b, type_="error")
    assert (err["code"], err["room"], err["client_id"]) == ("muted", "lobby", "m1") and err["until"]
    assert await sync_to_async(Message.objects.count)() == 0
    await admin_post(moderator, "/admin/chat/membership/", {"action": "unmute", "_selected_action": [pk], "index": 0})
    await recv(b, type_="membership")
    await b.send_json_to({"type": "message", "room": "lobby", "body": "hello again", "client_id": "m1"})
    assert (await recv(b, type_="message"))["body"] == "hello again"
    messages = [e.get_change_message() for e in await log_entries(Membership, pk)]
    assert sorted(messages) == ["Muted for 10 minutes.", "Unmuted."]
    await b.disconnect()


# --- change and add forms, live ------------------------------------------------------


def membership_form(membership: Membership, **changes: Any) -> dict[str, Any]:
    """The membership change form as the admin renders it, with ``changes`` applied."""
    muted = changes.pop("muted_until", membership.muted_until)
    data = {"role": membership.role, "muted_until_0": "", "muted_until_1": "", **changes}
    if muted is not None:
        data["muted_until_0"], data["muted_until_1"] = muted.strftime("%Y-%m-%d"), muted.strftime("%H:%M:%S")
    if changes.get("banned", membership.banned):
        data["banned"] = "on"
    else:
        data.pop("banned", None)
    return data


async def until_seen(comm, *types: str) -> dict[str, dict[str, Any]]:
    """The first event of each of ``types``, in whatever order they arrive (other events skipped)."""
    seen: dict[str, dict[str, Any]] = {}
    while set(types) - set(seen):
        event = await recv(comm)
        if event["type"] in types:
            seen.setdefault(event["type"], event)
    return seen


async def membership_change(moderator, membership_pk: int, **changes: Any):
    membership = await sync_to_async(Membership.objects.get)(pk=membership_pk)
    return await admin_post(moderator, f"/admin/chat/membership/{membership_pk}/change/",
                            membership_form(membership, **changes))


async def test_banned_ticked_on_the_change_form_removes_the_member_live(alice, bob, lobby, moderator):
    """Ticking Banned on the change form: bob's socket gets removed at once, then no more of the room's messages."""
    a, b = await connect(alice), await connect(bob)
    await join(a)
    await join(b)
    await drain(a)
    pk = await membership_pk(bob, lobby)
    response = await membership_change(moderator, pk, banned=True)
    assert response.status_code == 302, response.content[:2000]
    seen = await until_seen(b, "removed", "membership")
    assert seen["removed"] == {"type": "removed", "room": "lobby", "reason": "banned"}
    assert seen["membership"] == {"type": "membership", "room": "lobby", "role": "member",
                                  "muted_until": None, "banned": True}
    await a.send_json_to({"type": "message", "room": "lobby", "body": "bob cannot read this"})
    assert (await recv(a, type_="message"))["body"] == "bob cannot read this"
    assert [e for e in await drain(b) if e["type"] == "message"] == []
    await b.send_json_to({"type": "join", "room": "lobby"})
    assert (await recv(b, type_="error"))["code"] == "banned"
    [entry] = await log_entries(Membership, pk)
    assert entry.user_id == moderator.pk and "Banned" in entry.get_change_message()
    # Saving the form again unchanged sends nothing more.
    await membership_change(moderator, pk)
    assert [e for e in await drain(b) if e["type"] in ("removed", "membership")] == []
    await a.disconnect()
    await b.disconnect()


async def test_muted_until_on_the_change_form_refuses_the_next_message(bob, lobby, moderator):
    """A mute set on the change form: bob hears of it, his next message is refused muted; clearing it lets him post."""
    b = await connect(bob)
    await join(b)
    pk = await membership_pk(bob, lobby)
    response = await membership_change(moderator, pk, muted_until=datetime(2099, 1, 1, tzinfo=UTC))
    assert response.status_code == 302, response.content[:2000]
    standing = await recv(b, type_="membership")
    assert standing["muted_until"].startswith("2099-01-01") and not standing["banned"]
    await b.send_json_to({"type": "message", "room": "lobby", "body": "hello?", "client_id": "m1"})
    err = await recv(b, type_="error")
    assert (err["code"], err["client_id"]) == ("muted", "m1") and err["until"].startswith("2099-01-01")
    assert await sync_to_async(Message.objects.count)() == 0
    await membership_change(moderator, pk, muted_until=None)
    assert (await recv(b, type_="membership"))["muted_until"] is None
    await b.send_json_to({"type": "message", "room": "lobby", "body": "hello again", "client_id": "m1"})
    assert (await recv(b, type_="message"))["body"] == "hello again"
    await b.disconnect()


async def test_role_on_the_change_form_applies_to_the_next_delete(alice, bob, lobby, moderator):
    """Made moderator on the change form: bob hears of it and may delete alice's message at once."""
    a, b = await connect(alice), await connect(bob)
    await join(a)
    await join(b)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "delete me"})
    posted = await recv(b, type_="message")
    await b.send_json_to({"type": "delete", "room": "lobby", "id": posted["id"]})
    assert (await recv(b, type_="error"))["code"] == "forbidden"
    await membership_change(moderator, await membership_pk(bob, lobby), role="moderator")
    assert (await recv(b, type_="membership"))["role"] == "moderator"
    await b.send_json_to({"type": "delete", "room": "lobby", "id": posted["id"]})
    assert (await recv(a, type_="message.deleted"))["id"] == posted["id"]
    await a.disconnect()
    await b.disconnect()


async def test_membership_added_as_banned_on_the_add_form_applies_at_once(make_user, lobby, moderator):
    """A membership added banned on the add form: the user's open socket hears of it and cannot join."""
    carol = await sync_to_async(make_user)("carol")
    c = await connect(carol)
    response = await admin_post(moderator, "/admin/chat/membership/add/",
                                {"user": carol.pk, "room": lobby.pk, "role": "member", "muted_until_0": "",
                                 "muted_until_1": "", "banned": "on"})
    assert response.status_code == 302, response.content[:2000]
    assert await recv(c, type_="membership") == {"type": "membership", "room": "lobby", "role": "member",
                                                 "muted_until": None, "banned": True}
    await c.send_json_to({"type": "join", "room": "lobby"})
    assert (await recv(c, type_="error"))["code"] == "banned"
    membership = await sync_to_async(Membership.objects.get)(user=carol, room=lobby)
    assert membership.banned
    await c.disconnect()


async def test_membership_deleted_in_the_admin_leaves_the_room_live(bob, lobby, moderator):
    """Deleting a membership (its delete page) takes bob's socket out of the room; a public room may be rejoined."""
    b = await connect(bob)
    await join(b)
    pk = await membership_pk(bob, lobby)
    response = await admin_post(moderator, f"/admin/chat/membership/{pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content[:2000]
    assert await recv(b, type_="removed") == {"type": "removed", "room": "lobby", "reason": "kicked"}
    assert not await sync_to_async(Membership.objects.filter(pk=pk).exists)()
    assert (await join(b))["room"] == "lobby"
    await b.disconnect()


async def test_staff_body_edit_on_the_change_form_reaches_joined_sockets(alice, bob, lobby, moderator):
    """A body edited on the message's change form reaches every joined socket as message.updated; logged."""
    a, b = await connect(alice), await connect(bob)
    await join(a)
    await join(b)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "my phone is 555-0100"})
    posted = await recv(b, type_="message")
    response = await admin_post(moderator, f"/admin/chat/message/{posted['id']}/change/",
                                {"body": "my phone is [removed by staff]"})
    assert response.status_code == 302, response.content[:2000]
    for sock in (a, b):
        updated = await recv(sock, type_="message.updated")
        assert (updated["id"], updated["seq"], updated["body"]) == (
            posted["id"], posted["seq"], "my phone is [removed by staff]")
        assert updated["edited_ts"]
    stored = await sync_to_async(Message.objects.get)(pk=posted["id"])
    assert stored.body == "my phone is [removed by staff]" and stored.edited_at is not None
    [entry] = await log_entries(Message, posted["id"])
    assert entry.user_id == moderator.pk and "Body" in entry.get_change_message()
    # The history a new join reads has the edit too.
    c = await connect(alice)
    await join(c)
    assert (await recv(c, type_="message"))["body"] == "my phone is [removed by staff]"
    for sock in (a, b, c):
        await sock.disconnect()


async def test_staff_body_edit_is_filtered_like_any_edit(alice, lobby, moderator):
    """A staff edit is masked by mask words and refused (form error, nothing sent) for hide words."""
    a = await connect(alice)
    await join(a)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "hello"})
    posted = await recv(a, type_="message")
    await admin_post(moderator, "/admin/chat/bannedword/add/", {"word": "darn", "action": "mask"})
    await admin_post(moderator, "/admin/chat/bannedword/add/", {"word": "spoiler", "action": "hide"})
    path = f"/admin/chat/message/{posted['id']}/change/"
    response = await admin_post(moderator, path, {"body": "spoiler: it was him"})
    assert response.status_code == 200 and b"banned word" in response.content
    assert (await sync_to_async(Message.objects.get)(pk=posted["id"])).body == "hello"
    assert [e for e in await drain(a) if e["type"] == "message.updated"] == []
    await admin_post(moderator, path, {"body": "darn it"})
    assert (await recv(a, type_="message.updated"))["body"] == "**** it"
    await a.disconnect()


async def test_non_staff_cannot_post_the_change_forms(alice, bob, lobby, make_user):
    """The membership and message change forms POSTed by a non-staff user change nothing and send nothing."""
    b = await connect(bob)
    await join(b)
    message, _ = await sync_to_async(services.message_post)(room=lobby, author=alice, body="original")
    await recv(b, type_="message")
    pk = await membership_pk(bob, lobby)
    user = await sync_to_async(make_user)("user")
    for path, data in ((f"/admin/chat/membership/{pk}/change/", {"role": "member", "banned": "on"}),
                       (f"/admin/chat/message/{message.pk}/change/", {"body": "defaced"})):
        response = await admin_post(user, path, data)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert not (await sync_to_async(Membership.objects.get)(pk=pk)).banned
    assert (await sync_to_async(Message.objects.get)(pk=message.pk)).body == "original"
    assert [e for e in await drain(b) if e["type"] in ("removed", "membership", "message.updated")] == []
    await b.disconnect()


async def test_banned_word_added_in_the_admin_applies_to_the_next_message(alice, lobby, moderator, settings):
    """A word added in the admin masks the very next message, even with a long cache bound and no Celery worker."""
    settings.REALTIME = {**settings.REALTIME, "MODERATION_CACHE_SECONDS": 3600}
    a = await connect(alice)
    await join(a)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "darn"})
    assert (await recv(a, type_="message"))["body"] == "darn"  # the empty list is now cached
    response = await admin_post(moderator, "/admin/chat/bannedword/add/", {"word": "darn", "action": "mask"})
    assert response.status_code == 302, response.content[:2000]
    await a.send_json_to({"type": "message", "room": "lobby", "body": "darn"})
    assert (await recv(a, type_="message"))["body"] == "****"
    word = await sync_to_async(BannedWord.objects.get)(word="darn")
    await admin_post(moderator, f"/admin/chat/bannedword/{word.pk}/change/", {"word": "darn", "action": "hide"})
    await a.send_json_to({"type": "message", "room": "lobby", "body": "darn", "client_id": "h1"})
    err = await recv(a, type_="error")
    assert (err["code"], err["client_id"]) == ("blocked", "h1")
    await admin_post(moderator, "/admin/chat/bannedword/", {"action": "delete_selected", "_selected_action": [word.pk],
                                                            "post": "yes"})
    assert not await sync_to_async(BannedWord.objects.exists)()
    await a.send_json_to({"type": "message", "room": "lobby", "body": "darn"})
    assert (await recv(a, type_="message"))["body"] == "darn"
    await a.disconnect()
