"""Direct messages, private-room invites and removals, and the per-user room mute (chat.services).

Against the real database and the real broadcast transport: one conversation per set of
people whoever opens it (even two at once), nothing created for a bad request, and each
change reaching exactly the sockets of the people concerned, after commit.
"""

from __future__ import annotations

import threading

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from chat import errors, selectors, services
from chat.models import Membership, Message, Room
from realtime import broadcast
from tests.chat.test_services import GroupListener

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(make_user):
    return {name: make_user(name) for name in ("alice", "bob", "carol")}


def test_the_same_people_get_the_same_conversation_whoever_opens_it(people):
    """alice opening {bob} and bob opening {alice} is one private room with exactly those two members."""
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    room, created = services.dm_open(opener=alice, usernames=["bob"])
    again, created_again = services.dm_open(opener=bob, usernames=["alice", "bob"])
    assert created and not created_again and again.pk == room.pk
    assert room.is_dm and not room.is_public
    assert set(room.memberships.values_list("user__username", flat=True)) == {"alice", "bob"}
    group, _ = services.dm_open(opener=carol, usernames=["bob", "alice"])
    assert group.pk != room.pk and group.memberships.count() == 3  # another set: another conversation
    assert Room.objects.filter(dm_key__isnull=False).count() == 2


def test_a_group_dm_takes_up_to_eight_others_and_refuses_a_ninth(make_user, people):
    """Eight others make one room; nine are refused with nothing created."""
    names = [make_user(f"user{i}").get_username() for i in range(9)]
    room, created = services.dm_open(opener=people["alice"], usernames=names[:8])
    assert created and room.memberships.count() == 9
    with pytest.raises(errors.InvalidRequest):
        services.dm_open(opener=people["alice"], usernames=names)
    assert Room.objects.count() == 1


def test_an_unknown_or_inactive_user_is_refused_and_nothing_is_created(people, make_user):
    """No room, no membership, when one name is unknown or inactive, or when nobody else is named."""
    make_user("gone", is_active=False)
    for names in (["bob", "nobody"], ["gone"], [], ["alice"]):
        with pytest.raises(errors.InvalidRequest):
            services.dm_open(opener=people["alice"], usernames=names)
    assert not Room.objects.exists() and not Membership.objects.exists()


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite serialises writers; run with TEST_DATABASE=postgres")
def test_two_concurrent_opens_make_one_conversation(people):
    """alice and bob opening their DM at the same instant both get the same one room."""
    barrier, results = threading.Barrier(2), []

    def open_as(user, other):
        try:
            barrier.wait()
            results.append(services.dm_open(opener=user, usernames=[other]))
        finally:
            connection.close()

    threads = [threading.Thread(target=open_as, args=(people["alice"], "bob")),
               threading.Thread(target=open_as, args=(people["bob"], "alice"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0][0].pk == results[1][0].pk
    assert sorted(created for _, created in results) == [False, True]
    assert Room.objects.count() == 1


def test_a_lost_race_reads_the_winners_room(people, monkeypatch):
    """The insert that loses on the unique key (the other open committed first) returns that room, created=False."""
    winner, _ = services.dm_open(opener=people["bob"], usernames=["alice"])
    real_filter = Room.objects.filter
    calls = []

    def first_lookup_misses(*args, **kwargs):
        calls.append(kwargs)
        if len(calls) == 1:  # the lookup before the insert: as if the other open had not committed yet
            return Room.objects.none()
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(Room.objects, "filter", first_lookup_misses)
    room, created = services.dm_open(opener=people["alice"], usernames=["bob"])
    assert (room.pk, created) == (winner.pk, False)
    assert Membership.objects.filter(room=winner).count() == 2


async def test_a_new_dm_reaches_each_members_sockets_as_room_added(people):
    """Each member's sockets hear room.added with the room as their list shows it (the others' names)."""
    alice, bob = people["alice"], people["bob"]
    async with GroupListener(broadcast.user_group(bob.pk)) as bobs:
        room, _ = await sync_to_async(services.dm_open)(opener=alice, usernames=["bob"])
        event = (await bobs.next())["event"]
    assert event["type"] == "room.added" and event["room"] == room.slug
    assert event["entry"]["kind"] == "dm" and event["entry"]["people"] == [{"user": "alice", "name": "alice"}]
    assert event["entry"]["role"] == "member" and event["entry"]["muted"] is False


def test_the_room_list_shows_a_dm_to_its_members_only(people):
    """room_list lists the DM with the other people's names for members; an outsider's list lacks it."""
    people["alice"].first_name, people["alice"].last_name = "Alice", "Liddell"
    people["alice"].save()
    room, _ = services.dm_open(opener=people["alice"], usernames=["bob"])
    (listing,) = [x for x in selectors.room_list(user=people["bob"]) if x.room.pk == room.pk]
    assert listing.people == [("alice", "Alice Liddell")]
    assert room.pk not in [x.room.pk for x in selectors.room_list(user=people["carol"])]


# --- private rooms: owner, invites, removals --------------------------------------------


@pytest.fixture
def design(people):
    return services.room_create(slug="design", title="Design", is_public=False, created_by=people["alice"])


async def test_the_owner_invites_and_the_invitee_hears_room_added(people, design):
    """The creator is the owner; her invite makes bob a member and his sockets hear room.added."""
    alice, bob = people["alice"], people["bob"]
    owner = await sync_to_async(Membership.objects.get)(room=design, user=alice)
    assert owner.role == Membership.Role.OWNER and owner.is_moderator
    async with GroupListener(broadcast.user_group(bob.pk)) as bobs:
        membership, created = await sync_to_async(services.member_invite)(room=design, by=alice, username="bob")
        event = (await bobs.next())["event"]
    assert created and membership.role == Membership.Role.MEMBER
    assert (event["type"], event["room"], event["entry"]["public"]) == ("room.added", "design", False)
    assert (await sync_to_async(services.member_invite)(room=design, by=alice, username="bob"))[1] is False


def test_only_owners_and_moderators_invite_and_never_into_a_dm(people, design):
    """A plain member's invite, an invite of an unknown user and an invite into a DM are refused; nothing stored."""
    alice, bob = people["alice"], people["bob"]
    services.member_invite(room=design, by=alice, username="bob")
    with pytest.raises(errors.Forbidden):
        services.member_invite(room=design, by=bob, username="carol")
    with pytest.raises(errors.Forbidden):
        services.member_invite(room=design, by=people["carol"], username="carol")  # an outsider
    with pytest.raises(errors.InvalidRequest):
        services.member_invite(room=design, by=alice, username="nobody")
    dm, _ = services.dm_open(opener=alice, usernames=["bob"])
    with pytest.raises(errors.Forbidden):
        services.member_invite(room=dm, by=alice, username="carol")
    assert not Membership.objects.filter(user=people["carol"]).exists()


async def test_a_removed_member_loses_the_room_at_once(people, design):
    """Removal deletes the membership; the user's sockets get room_remove (leave now) and room.removed."""
    alice, bob = people["alice"], people["bob"]
    await sync_to_async(services.member_invite)(room=design, by=alice, username="bob")
    async with GroupListener(broadcast.user_group(bob.pk)) as bobs:
        await sync_to_async(services.member_remove)(room=design, by=alice, username="bob")
        control, event = await bobs.next(), await bobs.next()
    assert (control["type"], control["action"], control["room"], control["reason"]) == (
        broadcast.CONTROL, "room_remove", "design", "removed")
    assert event["event"] == {"type": "room.removed", "room": "design", "reason": "removed"}
    assert not await sync_to_async(Membership.objects.filter(room=design, user=bob).exists)()
    assert not (await sync_to_async(selectors.room_access)(room=design, user=bob)).can_enter


def test_nobody_removes_the_owner_and_a_moderator_removes_only_members(people, design, make_user):
    """The owner stays; a moderator cannot remove another moderator; the owner can."""
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    for name in ("bob", "carol"):
        services.member_invite(room=design, by=alice, username=name)
    Membership.objects.filter(room=design, user__in=[bob, carol]).update(role=Membership.Role.MODERATOR)
    with pytest.raises(errors.Forbidden):
        services.member_remove(room=design, by=bob, username="alice")
    with pytest.raises(errors.Forbidden):
        services.member_remove(room=design, by=bob, username="carol")
    services.member_remove(room=design, by=alice, username="carol")
    assert set(design.memberships.values_list("user__username", flat=True)) == {"alice", "bob"}


# --- DM pushes and the per-user mute -----------------------------------------------------


async def types_until_marker(listener: GroupListener, user) -> list[str]:
    """The types of the events the user's group carried before a marker sent now."""
    await broadcast.auser_send(user.pk, {"type": "marker"})
    seen = []
    while (event := (await listener.next())["event"])["type"] != "marker":
        seen.append(event["type"])
    return seen


async def test_a_dm_message_reaches_the_other_members_sockets_unless_muted(people):
    """A DM post pushes ``dm`` to bob's sockets (not alice's own); once bob mutes the DM, nothing."""
    alice, bob = people["alice"], people["bob"]
    room, _ = await sync_to_async(services.dm_open)(opener=alice, usernames=["bob"])
    async with GroupListener(broadcast.user_group(bob.pk)) as bobs, \
            GroupListener(broadcast.user_group(alice.pk)) as alices:
        await sync_to_async(services.message_post)(room=room, author=alice, body="lunch?")
        event = (await bobs.next())["event"]
        while event["type"] == "room.added":  # the DM's own announcement, if it was still on its way
            event = (await bobs.next())["event"]
        assert (event["type"], event["room"], event["author"], event["body"]) == ("dm", room.slug, "alice", "lunch?")
        await sync_to_async(services.room_notifications_set)(room=room, user=bob, muted=True)
        assert (await bobs.next())["event"] == {"type": "room.muted", "room": room.slug, "muted": True}
        await sync_to_async(services.message_post)(room=room, author=alice, body="still there?")
        assert "dm" not in await types_until_marker(bobs, bob)  # no dm for a muted room
        assert "dm" not in await types_until_marker(alices, alice)  # the author hears no dm of her own


def test_a_muted_room_sends_no_mention(people, lobby):
    """mentions_notify skips a user who muted the room, and notifies them again once unmuted."""
    alice, bob = people["alice"], people["bob"]
    for user in (alice, bob):
        services.room_enter(slug="lobby", user=user)
    message, _ = services.message_post(room=lobby, author=alice, body="@bob look")
    services.room_notifications_set(room=lobby, user=bob, muted=True)
    assert services.mentions_notify(message_id=message.pk) == []
    services.room_notifications_set(room=lobby, user=bob, muted=False)
    assert services.mentions_notify(message_id=message.pk) == ["bob"]


def test_an_outsider_cannot_mute_a_private_room(people, design):
    """Muting needs entry: an outsider gets forbidden and no membership."""
    with pytest.raises(errors.Forbidden):
        services.room_notifications_set(room=design, user=people["bob"], muted=True)
    assert not Membership.objects.filter(room=design, user=people["bob"]).exists()
    assert not Message.objects.exists()
