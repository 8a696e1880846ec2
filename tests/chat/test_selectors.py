"""chat.selectors against the database: who may do what in a room, what a joining socket is sent,
history pages, visible rooms."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from chat import errors, events, selectors, services
from chat.models import Membership, Room

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(make_user, lobby):
    user = make_user("alice")
    services.room_enter(slug="lobby", user=user)
    return user


def post(room: Room, author, n: int) -> list[int]:
    return [services.message_post(room=room, author=author, body=f"m{i}")[0].seq for i in range(n)]


def seqs(messages) -> list[int]:
    return [m.seq for m in messages]


def resume(room: Room, last_seq: int | None, *, page: int = 5, cap: int = 10) -> selectors.Resume:
    return selectors.room_resume(room=room, last_seq=last_seq, page=page, cap=cap)


# --- room_resume -------------------------------------------------------------------


def test_resume_without_last_seq_is_the_latest_page(alice, lobby):
    """No last_seq: the newest ``page`` messages, oldest first, no reset."""
    post(lobby, alice, 12)
    r = resume(lobby, None, page=5)
    assert seqs(r.messages) == [8, 9, 10, 11, 12]
    assert r.latest_seq == 12 and r.reset is False


def test_resume_of_an_empty_room(lobby):
    """An empty room: nothing to send, latest seq 0, whatever the client had."""
    assert resume(lobby, None) == selectors.Resume([], 0, False)
    assert resume(lobby, 0) == selectors.Resume([], 0, False)
    assert resume(lobby, 3).reset is True  # a client claiming messages this room never had


def test_resume_sends_exactly_the_missed_messages(alice, lobby):
    """last_seq within the cap: every message after it, in seq order, nothing before it."""
    post(lobby, alice, 9)
    r = resume(lobby, 4, page=2, cap=10)
    assert seqs(r.messages) == [5, 6, 7, 8, 9]  # not limited by the page size
    assert [m.body for m in r.messages] == ["m4", "m5", "m6", "m7", "m8"]
    assert r.latest_seq == 9 and r.reset is False


def test_resume_up_to_date_sends_nothing(alice, lobby):
    """last_seq equal to the latest: nothing, no reset."""
    post(lobby, alice, 3)
    assert resume(lobby, 3) == selectors.Resume([], 3, False)


def test_resume_from_zero_sends_everything_within_the_cap(alice, lobby):
    """last_seq 0 (a client that has nothing yet) gets the whole room when within the cap."""
    post(lobby, alice, 7)
    r = resume(lobby, 0, page=3, cap=7)
    assert seqs(r.messages) == list(range(1, 8)) and r.reset is False


def test_resume_beyond_the_latest_resets(alice, lobby):
    """A last_seq ahead of the server (another database, a restore): reset with the latest page."""
    post(lobby, alice, 6)
    r = resume(lobby, 7, page=4)
    assert r.reset is True and r.latest_seq == 6
    assert seqs(r.messages) == [3, 4, 5, 6]


def test_resume_too_far_behind_resets(alice, lobby):
    """More than ``cap`` behind: reset with the latest page; exactly ``cap`` behind is still a resume."""
    post(lobby, alice, 15)
    behind = resume(lobby, 4, page=3, cap=10)
    assert behind.reset is True and seqs(behind.messages) == [13, 14, 15]
    at_cap = resume(lobby, 5, page=3, cap=10)
    assert at_cap.reset is False and seqs(at_cap.messages) == list(range(6, 16))


def test_resume_includes_deleted_messages_as_tombstones(alice, lobby):
    """Deleted messages are still in the resume (no gaps), and are sent as message.deleted without their text."""
    post(lobby, alice, 5)
    third = lobby.messages.get(seq=3)
    services.message_delete(room=lobby, user=alice, message_id=third.pk)
    r = resume(lobby, 1)
    assert seqs(r.messages) == [2, 3, 4, 5]
    sent = [events.message_event(m) for m in r.messages]
    assert [e["type"] for e in sent] == ["message", "message.deleted", "message", "message"]
    assert sent[1] == {"type": "message.deleted", "room": "lobby", "seq": 3, "id": third.pk}
    latest = resume(lobby, None, page=5)
    assert seqs(latest.messages) == [1, 2, 3, 4, 5]


def test_resume_only_reads_its_own_room(alice, lobby):
    """Messages of other rooms never appear in a room's resume."""
    other = services.room_create(slug="other", title="Other", created_by=alice)
    post(other, alice, 4)
    post(lobby, alice, 2)
    r = resume(lobby, 0)
    assert {m.room_id for m in r.messages} == {lobby.pk} and seqs(r.messages) == [1, 2]


# --- pages -------------------------------------------------------------------------


def test_room_before_and_latest_pages(alice, lobby):
    """Pages before a seq are oldest first and end just below it."""
    post(lobby, alice, 8)
    assert seqs(selectors.room_latest(room=lobby, limit=3)) == [6, 7, 8]
    assert seqs(selectors.room_before(room=lobby, before_seq=6, limit=3)) == [3, 4, 5]
    assert seqs(selectors.room_before(room=lobby, before_seq=3, limit=3)) == [1, 2]
    assert selectors.room_before(room=lobby, before_seq=1, limit=3) == []
    assert seqs(selectors.room_latest(room=lobby, limit=100)) == list(range(1, 9))


# --- room_access: the one answer to "may this user read / post here" ----------------


@pytest.fixture
def doors(make_user, lobby):
    """A public and a private room, and one user in each situation the rule knows."""
    owner = make_user("owner")
    secret = services.room_create(slug="secret", title="Secret", is_public=False, created_by=owner)
    users = {name: make_user(name) for name in ("outsider", "member", "insider", "banned", "muted", "inactive")}
    Membership.objects.create(room=lobby, user=users["member"])
    Membership.objects.create(room=secret, user=users["insider"])
    for room in (lobby, secret):
        Membership.objects.create(room=room, user=users["banned"], banned=True)
        Membership.objects.create(room=room, user=users["muted"], muted_until=timezone.now() + timedelta(minutes=5))
        Membership.objects.create(room=room, user=users["inactive"])
    users["inactive"].is_active = False
    users["inactive"].save(update_fields=["is_active"])
    return {"public": lobby, "private": secret, **users}


# (room, user) -> (can_enter, can_read, can_post, reason): allowed and denied side by side.
ACCESS = [
    ("public", "outsider", (True, False, False, "forbidden")),  # may enter (a membership is made), not read yet
    ("public", "member", (True, True, True, None)),
    ("public", "banned", (False, False, False, "banned")),
    ("public", "muted", (True, True, False, "muted")),
    ("public", "inactive", (False, False, False, "forbidden")),
    ("private", "outsider", (False, False, False, "forbidden")),
    ("private", "insider", (True, True, True, None)),
    ("private", "member", (False, False, False, "forbidden")),  # a member elsewhere only
    ("private", "banned", (False, False, False, "banned")),
    ("private", "muted", (True, True, False, "muted")),
    ("private", "inactive", (False, False, False, "forbidden")),
]


@pytest.mark.parametrize(("room", "user", "expected"), ACCESS, ids=[f"{r}-{u}" for r, u, _ in ACCESS])
def test_room_access_answers_every_door_alike(doors, room, user, expected):
    """One rule for every door: what room_access says, rooms_visible lists and the refusal raises agree."""
    access = selectors.room_access(room=doors[room], user=doors[user])
    assert (access.can_enter, access.can_read, access.can_post, access.reason) == expected
    assert (doors[room] in selectors.rooms_visible(user=doors[user])) == access.can_enter
    for action, allowed in zip(("enter", "read", "post"), expected[:3], strict=True):
        if allowed:
            assert access.refusal(action) is None
            access.require(action)
        else:
            with pytest.raises(errors.ChatError) as info:
                access.require(action)
            assert info.value.code == access.refusal(action).code
            assert info.value.context["room"] == doors[room].slug


def test_room_access_of_no_room_and_of_a_deleted_room(doors):
    """No room, or one deleted since it was loaded: every action is refused as room_not_found."""
    assert selectors.room_access(room=None, user=doors["member"]).reason == "room_not_found"
    gone = services.room_create(slug="gone", title="Gone")
    Room.objects.filter(pk=gone.pk).delete()
    access = selectors.room_access(room=gone, user=doors["member"])
    assert not (access.can_enter or access.can_read or access.can_post)
    with pytest.raises(errors.RoomNotFound):
        access.require("post")


def test_room_access_with_a_loaded_membership_costs_no_query(doors, django_assert_num_queries):
    """The hot path (message_post) hands in the membership it read: the answer needs no query."""
    membership = Membership.objects.get(room=doors["public"], user=doors["muted"])
    with django_assert_num_queries(0):
        access = selectors.room_access(room=doors["public"], user=doors["muted"], membership=membership)
    assert access.can_read and not access.can_post
    assert isinstance(access.refusal("post"), errors.Muted)
    assert access.refusal("post").context["until"] == membership.muted_until.isoformat()


@pytest.mark.parametrize(("room", "user", "expected"), ACCESS, ids=[f"{r}-{u}" for r, u, _ in ACCESS])
def test_a_standing_answers_as_its_membership(doors, room, user, expected, django_assert_num_queries):
    """What a socket keeps between messages (Standing) gets room_access's answer of the membership it came from."""
    membership = selectors.membership_of(room=doors[room], user=doors[user])
    standing = selectors.Standing.of(membership)
    assert (standing is None) == (membership is None)
    with django_assert_num_queries(0 if membership is not None else 1):  # none: does the room still exist?
        access = selectors.room_access(room=doors[room], user=doors[user], membership=standing)
    assert (access.can_enter, access.can_read, access.can_post, access.reason) == expected
    full = selectors.room_access(room=doors[room], user=doors[user], membership=membership)
    assert {a: type(e) for a, e in access.refusals.items()} == {a: type(e) for a, e in full.refusals.items()}
    assert [e.context for e in access.refusals.values()] == [e.context for e in full.refusals.values()]


def test_a_standing_keeps_the_role_in_slots(doors):
    """A moderator's standing is a moderator's; it holds its three values in slots, not the model's state."""
    membership = Membership.objects.get(room=doors["public"], user=doors["member"])
    membership.role = Membership.Role.MODERATOR
    standing = selectors.Standing.of(membership)
    assert standing.is_moderator and not standing.is_muted() and not standing.banned
    assert not hasattr(standing, "__dict__")
    assert selectors.Standing.of(None) is None


# --- rooms a user sees -------------------------------------------------------------


def test_rooms_visible(make_user, lobby):
    """Public rooms and the user's private rooms, once each, by slug; never rooms they are banned from."""
    alice, bob = make_user("alice"), make_user("bob")
    services.room_create(slug="secret", title="Secret", is_public=False, created_by=bob)
    services.room_create(slug="alpha", title="Alpha", created_by=bob)
    services.room_create(slug="mine", title="Mine", is_public=False, created_by=alice)
    services.room_enter(slug="lobby", user=alice)
    services.room_enter(slug="alpha", user=alice)
    assert [r.slug for r in selectors.rooms_visible(user=alice)] == ["alpha", "lobby", "mine"]
    assert [r.slug for r in selectors.rooms_visible(user=bob)] == ["alpha", "lobby", "secret"]
    services.member_ban(membership=Membership.objects.get(user=alice, room__slug="lobby"))
    assert [r.slug for r in selectors.rooms_visible(user=alice)] == ["alpha", "mine"]


def test_lookups(alice, lobby):
    """room_by_slug and membership_of return None for what does not exist."""
    assert selectors.room_by_slug(slug="lobby") == lobby
    assert selectors.room_by_slug(slug="nowhere") is None
    assert selectors.membership_of(room=lobby, user=alice).user == alice
    other = services.room_create(slug="other", title="Other")
    assert selectors.membership_of(room=other, user=alice) is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("last_seq", [None, 99, -1], ids=["latest-page", "ahead-reset", "behind-reset"])
def test_resume_never_sends_past_its_own_latest_seq(alice, lobby, last_seq):
    """A message committed right after the room's latest seq is read is not in the resume.

    The consumer drops live messages at or below ``latest_seq`` as already sent; one in the
    history but above it would then be delivered twice (history, then live).
    """
    post(lobby, alice, 12)
    if last_seq == -1:
        last_seq = 0  # 12 behind with cap 10: reset
    fired = []

    def commit_another() -> None:
        try:
            services.message_post(room=Room.objects.get(pk=lobby.pk), author=alice, body="racing")
        finally:
            connection.close()

    def after_latest_is_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not fired and sql.lstrip().upper().startswith("SELECT") and '"last_seq"' in sql:
            fired.append(sql)
            thread = threading.Thread(target=commit_another)
            thread.start()
            thread.join(timeout=30)
        return result

    with connection.execute_wrapper(after_latest_is_read):
        r = resume(lobby, last_seq, page=5, cap=10)
    assert fired, "the room's latest seq was never read"
    assert r.latest_seq == 12 and r.reset is (last_seq is not None)
    assert seqs(r.messages) == [8, 9, 10, 11, 12]
    assert Room.objects.get(pk=lobby.pk).last_seq == 13  # the racing message did commit
