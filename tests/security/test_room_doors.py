"""THE DOOR TEST: an outsider tries every door of a direct message and of a private room.

alice and bob share a DM and a private room (alice owns it, bob was invited); carol is
in neither. Each door asks chat.selectors.room_access(); here carol knocks on each one,
beside bob (a member) where the allowed case shows the door works, and gets nothing: no
frame of the room, no message text, no row written. ``DOORS`` lists the doors tried; an
engineer who adds a door to a room (search, attachments, …) adds its test here and its
name there.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from chat import errors, services
from chat.models import Membership, Room
from reactions.models import Reaction
from reactions.services import reaction_add
from realtime import broadcast, presence
from receipts.models import ReadPosition
from receipts.services import read_mark
from tests.chat.test_consumers import connect, drain, join, recv
from tests.chat.test_services import GroupListener

pytestmark = pytest.mark.django_db(transaction=True)

#: Every door to a room, each tried below for both kinds of closed room.
DOORS = [
    "socket join",
    "history API",
    "reactions",
    "receipts",
    "mentions",
    "presence",
    "room list",
    "members and mute API",
    "admin Online now",
    "search",
    "attachments",
]

SECRET = "the plans are in the blue folder"


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(make_user):
    return {"alice": make_user("alice"), "bob": make_user("bob"), "carol": make_user("carol")}


@pytest.fixture(params=["dm", "private"])
def closed(request, people) -> Room:
    """A DM of alice and bob, or alice's private room with bob invited; one message in it."""
    alice = people["alice"]
    if request.param == "dm":
        room, _ = services.dm_open(opener=alice, usernames=["bob"])
    else:
        room = services.room_create(slug="design", title="Design", is_public=False, created_by=alice)
        services.member_invite(room=room, by=alice, username="bob")
    services.message_post(room=room, author=alice, body=SECRET)
    room.refresh_from_db()
    return room


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_door_list_is_complete():
    """Each door named in DOORS has its test in this module (a new door cannot be listed and left untried)."""
    tested = {name for name in globals() if name.startswith("test_door_")}
    assert len(tested) == len(DOORS)


async def test_door_socket_join(people, closed):
    """carol's join gets one error frame (forbidden) and then nothing of the room, even as bob posts; bob joins."""
    carol, bob = await connect(people["carol"]), await connect(people["bob"])
    await carol.send_json_to({"type": "join", "room": closed.slug})
    refusal = await recv(carol)
    assert (refusal["type"], refusal["code"], refusal["room"]) == ("error", "forbidden", closed.slug)
    assert (await join(bob, closed.slug))["room"] == closed.slug
    await bob.send_json_to({"type": "message", "room": closed.slug, "body": "second secret"})
    assert (await recv(bob, type_="message"))["body"] == SECRET  # the history
    assert (await recv(bob, type_="message"))["body"] == "second secret"
    leaked = [e for e in await drain(carol) if e.get("room") == closed.slug or SECRET in str(e)]
    assert leaked == []
    await carol.send_json_to({"type": "message", "room": closed.slug, "body": "let me in"})
    assert (await recv(carol))["code"] == "not_joined"
    await carol.disconnect()
    await bob.disconnect()


def test_door_history_api(people, closed):
    """carol's history request is 403 with no message text; bob's is 200 with it."""
    denied = logged_in(people["carol"]).get(f"/api/rooms/{closed.slug}/messages/")
    assert denied.status_code == 403 and SECRET not in denied.content.decode()
    allowed = logged_in(people["bob"]).get(f"/api/rooms/{closed.slug}/messages/")
    assert allowed.status_code == 200 and SECRET in allowed.content.decode()


async def test_door_reactions(people, closed):
    """carol cannot react over the socket (not joined, cannot join) nor through the service; no row."""
    message_id = await sync_to_async(lambda: closed.messages.get().pk)()
    carol = await connect(people["carol"])
    await carol.send_json_to({"type": "react", "room": closed.slug, "id": message_id, "emoji": "👍"})
    assert (await recv(carol))["code"] == "not_joined"
    with pytest.raises(errors.Forbidden):
        await sync_to_async(reaction_add)(room_slug=closed.slug, message_id=message_id, user=people["carol"],
                                          emoji="👍")
    assert await sync_to_async(reaction_add)(room_slug=closed.slug, message_id=message_id, user=people["bob"],
                                             emoji="👍")
    assert not await sync_to_async(Reaction.objects.filter(user=people["carol"]).exists)()
    await carol.disconnect()


async def test_door_receipts(people, closed):
    """carol cannot mark the room read (socket or service); no read position of hers is stored."""
    carol = await connect(people["carol"])
    await carol.send_json_to({"type": "read", "room": closed.slug, "seq": 1})
    assert (await recv(carol))["code"] == "not_joined"
    with pytest.raises(errors.Forbidden):
        await sync_to_async(read_mark)(room_slug=closed.slug, user=people["carol"], seq=1)
    assert await sync_to_async(read_mark)(room_slug=closed.slug, user=people["bob"], seq=1) == 1
    assert not await sync_to_async(ReadPosition.objects.filter(user=people["carol"]).exists)()
    await carol.disconnect()


async def test_door_mentions(people, closed):
    """@carol in the room notifies nobody (her sockets hear nothing); @bob there notifies bob."""
    message, _ = await sync_to_async(services.message_post)(
        room=closed, author=people["alice"], body="@carol @bob " + SECRET)
    async with GroupListener(broadcast.user_group(people["carol"].pk)) as carols:
        assert await sync_to_async(services.mentions_notify)(message_id=message.pk) == ["bob"]
        await broadcast.auser_send(people["carol"].pk, {"type": "marker"})
        assert (await carols.next())["event"] == {"type": "marker"}


async def test_door_presence(people, closed):
    """A refused join puts carol in no presence and shows her nobody's; bob's join lists alice and bob only."""
    alice, carol = await connect(people["alice"]), await connect(people["carol"])
    await join(alice, closed.slug)
    await carol.send_json_to({"type": "join", "room": closed.slug})
    assert (await recv(carol))["type"] == "error"
    assert await presence.presence_list(room=closed.slug) == ["alice"]
    bob = await connect(people["bob"])
    assert sorted((await join(bob, closed.slug))["presence"]) == ["alice", "bob"]
    assert [e for e in await drain(carol) if e["type"] == "presence"] == []
    for comm in (alice, bob, carol):
        await comm.disconnect()


def test_door_room_list(people, closed):
    """The room doesn't appear in carol's page, /api/rooms/, unread counts or people-facing lists; bob's has it."""
    carol = logged_in(people["carol"])
    for url in ("/", "/api/rooms/", "/api/receipts/"):
        response = carol.get(url)
        assert response.status_code == 200, url
        assert closed.slug not in response.content.decode() and SECRET not in response.content.decode()
    assert closed.slug in logged_in(people["bob"]).get("/api/rooms/").content.decode()


def test_door_members_and_mute_api(people, closed):
    """carol cannot list the members, invite herself, remove anyone or mute the room; nothing is written."""
    carol = logged_in(people["carol"])
    base = f"/api/rooms/{closed.slug}"
    assert carol.get(f"{base}/members/").status_code == 403
    assert carol.post(f"{base}/members/", '{"user": "carol"}', content_type="application/json").status_code == 403
    assert carol.delete(f"{base}/members/bob/").status_code == 403
    assert carol.post(f"{base}/mute/", '{"muted": true}', content_type="application/json").status_code == 403
    assert not Membership.objects.filter(user=people["carol"]).exists()
    assert logged_in(people["bob"]).get(f"{base}/members/").status_code == 200


async def test_door_admin_online_now(people, closed, make_user):
    """Non-staff carol is sent to the admin login; staff carol doesn't see the room; a superuser does."""
    alice = await connect(people["alice"])
    await join(alice, closed.slug)
    get = sync_to_async(lambda user: logged_in(user).get("/admin/chat/room/online/"))
    non_staff = await get(people["carol"])
    assert non_staff.status_code == 302 and closed.slug not in non_staff.content.decode()
    await sync_to_async(type(people["carol"]).objects.filter(pk=people["carol"].pk).update)(is_staff=True)
    staff = await get(await sync_to_async(type(people["carol"]).objects.get)(pk=people["carol"].pk))
    assert staff.status_code == 200 and closed.slug not in staff.content.decode()
    root = await sync_to_async(make_user)("root", is_staff=True, is_superuser=True)
    assert closed.slug in (await get(root)).content.decode()
    await alice.disconnect()


def test_door_search(people, closed):
    """carol's search finds nothing of the room, across rooms or naming it; bob's finds the message."""
    carol, bob = logged_in(people["carol"]), logged_in(people["bob"])
    everywhere = carol.get("/api/search/", {"q": "blue folder"})
    assert everywhere.status_code == 200 and everywhere.json()["results"] == []
    named = carol.get("/api/search/", {"q": "blue folder", "room": closed.slug})
    assert named.status_code in (403, 404) and SECRET not in named.content.decode()
    found = bob.get("/api/search/", {"q": "blue folder"}).json()["results"]
    assert [r["room"] for r in found] == [closed.slug]


def test_door_attachments(people, closed):
    """carol can neither upload to the room nor fetch a file bob shared there (404, as for no room); bob can."""
    import io

    from tests.attachments.conftest import png_bytes

    def upload(client: Client):
        f = io.BytesIO(png_bytes())
        f.name = "plan.png"
        return client.post(f"/api/rooms/{closed.slug}/uploads/", {"file": f})

    carol, bob = logged_in(people["carol"]), logged_in(people["bob"])
    assert upload(carol).status_code == 404
    shared = upload(bob)
    assert shared.status_code == 201, shared.content
    body = shared.json()
    services.message_post(room=closed, author=people["bob"], body="the plan", attachments=[body["id"]])
    for url in (body["url"], body["thumbnail_url"]):
        assert carol.get(url).status_code == 404
        assert bob.get(url).status_code == 200
