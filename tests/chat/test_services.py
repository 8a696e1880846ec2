"""chat.services against the real database and the real Redis channel layer.

The write path's guarantees: each room's seq goes 1, 2, 3 … with no gap and no repeat,
even with concurrent writers; a client_id is stored once; a refused or rolled-back
write stores nothing and reaches nobody (events go out only after commit).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from chat import moderation, selectors, services
from chat.models import BannedWord, Membership, Message, Room
from realtime import broadcast

pytestmark = pytest.mark.django_db(transaction=True)


class Boom(Exception):
    """Raised inside a transaction to roll it back."""


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


def seqs(room: Room) -> list[int]:
    return list(Message.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))


class GroupListener:
    """A subscriber on the real broadcast transport (realtime.hub), to see exactly what was broadcast."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._listen = broadcast.alisten(group)
        self.queue: asyncio.Queue | None = None

    async def __aenter__(self) -> GroupListener:
        # What was committed before the listener starts is published before it subscribes,
        # so it sees exactly what is broadcast from here on (the outbox publishes a commit
        # after the service returns).
        from realtime.runtime import runtime

        await runtime().outbox.flushed()
        self.queue = await self._listen.__aenter__()
        # Published is not yet read back: another socket of this process (an earlier test's)
        # may keep the group subscribed, and the hub delivers what it had not read yet to
        # this listener too. A barrier published now arrives after all of that: skip to it.
        barrier = {"type": "test.barrier", "id": uuid.uuid4().hex}
        await broadcast.apublish(self.group, barrier)
        while await asyncio.wait_for(self.queue.get(), 5) != barrier:
            pass
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._listen.__aexit__(*exc)

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        """The next chat event (presence traffic of other sockets is skipped)."""
        while True:
            message = await asyncio.wait_for(self.queue.get(), timeout)
            if message.get("event", {}).get("type") != "presence":
                return message


# --- seq -------------------------------------------------------------------------


def test_seq_increases_by_one_per_message_and_never_repeats(alice, bob, lobby):
    """Each post takes the room's next seq; rooms count independently; room.last_seq follows."""
    other = services.room_create(slug="other", title="Other", created_by=alice)
    posted = []
    for i in range(10):
        author = alice if i % 2 else bob
        message, created = services.message_post(room=lobby, author=author, body=f"m{i}")
        assert created
        posted.append(message.seq)
        if i % 3 == 0:
            services.message_post(room=other, author=alice, body=f"o{i}")
    assert posted == list(range(1, 11))
    assert seqs(lobby) == list(range(1, 11))
    assert seqs(other) == [1, 2, 3, 4]
    lobby.refresh_from_db()
    assert lobby.last_seq == 10


def test_deleted_messages_keep_their_seq(alice, lobby):
    """Deleting a message tombstones it: its seq stays used and the next post does not reuse it."""
    first, _ = services.message_post(room=lobby, author=alice, body="one")
    second, _ = services.message_post(room=lobby, author=alice, body="two")
    services.message_delete(room=lobby, user=alice, message_id=second.pk)
    third, _ = services.message_post(room=lobby, author=alice, body="three")
    assert (first.seq, second.seq, third.seq) == (1, 2, 3)
    assert Message.objects.get(pk=second.pk).is_deleted


def in_threads(target, args_list: list[tuple]) -> list[BaseException]:
    """``target(*args)`` for each of ``args_list``, each in its own thread (its own database
    connection), all at once; returns what they raised, for the test's thread to assert on."""
    errors: list[BaseException] = []

    def run(*args: Any) -> None:
        try:
            target(*args)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=args) for args in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return errors


def test_concurrent_posts_from_threads_get_seqs_1_to_100(lobby, make_user):
    """4 threads x 25 posts on separate connections: seqs are exactly 1..100, each author's in order."""
    users = [make_user(f"writer{i}") for i in range(4)]
    for user in users:
        Membership.objects.create(room=lobby, user=user)
    barrier = threading.Barrier(len(users))

    def write(user) -> None:
        room = Room.objects.get(pk=lobby.pk)
        barrier.wait(timeout=10)
        for j in range(25):
            services.message_post(room=room, author=user, body=f"{user.username}:{j}", client_id=f"k{j}")

    assert in_threads(write, [(u,) for u in users]) == []
    assert seqs(lobby) == list(range(1, 101))
    lobby.refresh_from_db()
    assert lobby.last_seq == 100
    for user in users:
        bodies = list(Message.objects.filter(author=user).order_by("seq").values_list("body", flat=True))
        assert bodies == [f"{user.username}:{j}" for j in range(25)]


def test_one_user_entering_rooms_from_four_threads_at_once_gets_one_membership_each(alice):
    """The first entry of a public room makes the membership: four sockets of one user
    entering the same 20 rooms at the same moment (a reload with several tabs) all get
    in, with the same membership, and each room has exactly one."""
    rooms = [Room.objects.create(slug=f"enter-{i}", title=f"Enter {i}", is_public=True) for i in range(20)]
    barrier = threading.Barrier(4)
    got: list[tuple[int, int]] = []

    def enter() -> None:
        for room in rooms:
            barrier.wait(timeout=10)
            entered, membership = services.room_enter(slug=room.slug, user=alice)
            got.append((entered.pk, membership.pk))

    assert in_threads(enter, [()] * 4) == []
    assert len(got) == 80
    for room in rooms:
        assert Membership.objects.filter(room=room, user=alice).count() == 1
        one = Membership.objects.get(room=room, user=alice).pk
        assert {m for r, m in got if r == room.pk} == {one}


def test_concurrent_repeats_of_one_client_id_store_one_message(alice, lobby):
    """The same client_id sent from 4 threads at once (a client retrying on several sockets) is stored once."""
    barrier = threading.Barrier(4)
    results: list[tuple[int, bool]] = []

    def send() -> None:
        room = Room.objects.get(pk=lobby.pk)
        barrier.wait(timeout=10)
        message, created = services.message_post(room=room, author=alice, body="once", client_id="same")
        results.append((message.pk, created))

    assert in_threads(send, [()] * 4) == []
    assert len({pk for pk, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, False, True]
    assert seqs(lobby) == [1]


# --- idempotency -------------------------------------------------------------------


def test_repeated_client_id_returns_the_original_and_stores_nothing(alice, bob, lobby):
    """A client_id the author already used in the room returns (original, False), even with another body."""
    original, created = services.message_post(room=lobby, author=alice, body="hello", client_id="c-1")
    assert created
    again, created_again = services.message_post(room=lobby, author=alice, body="hello (resent)", client_id="c-1")
    assert created_again is False
    assert again.pk == original.pk and again.seq == original.seq and again.body == "hello"
    assert seqs(lobby) == [1]
    lobby.refresh_from_db()
    assert lobby.last_seq == 1  # the repeat consumed no seq
    # The key is per author and per room.
    bobs, created = services.message_post(room=lobby, author=bob, body="mine", client_id="c-1")
    assert created and bobs.pk != original.pk
    other = services.room_create(slug="other", title="Other", created_by=alice)
    elsewhere, created = services.message_post(room=other, author=alice, body="there", client_id="c-1")
    assert created and elsewhere.seq == 1


async def test_repeated_client_id_broadcasts_once(alice, lobby):
    """The repeat is not broadcast again: the room sees the message once."""
    async with GroupListener("room.lobby") as room:
        await sync_to_async(services.message_post)(room=lobby, author=alice, body="hi", client_id="c-2")
        await sync_to_async(services.message_post)(room=lobby, author=alice, body="hi", client_id="c-2")
        await sync_to_async(services.message_post)(room=lobby, author=alice, body="marker")
        first = await room.next()
        second = await room.next()
    assert (first["event"]["client_id"], first["event"]["seq"]) == ("c-2", 1)
    assert (second["event"]["body"], second["event"]["seq"]) == ("marker", 2)


# --- rollback: nothing stored, nothing broadcast ------------------------------------


async def test_rolled_back_post_stores_nothing_and_broadcasts_nothing(alice, lobby):
    """A post inside a transaction that rolls back leaves no row, no seq and no event.

    Proof on the real layer: after the rollback a committed post is made; the first (and
    only) event the room's group receives is that one, with seq 1.
    """

    def post_then_fail() -> None:
        with transaction.atomic():
            services.message_post(room=lobby, author=alice, body="never", client_id="rb-1")
            raise Boom

    async with GroupListener("room.lobby") as room:
        with pytest.raises(Boom):
            await sync_to_async(post_then_fail)()
        assert await sync_to_async(Message.objects.count)() == 0
        assert (await sync_to_async(Room.objects.get)(pk=lobby.pk)).last_seq == 0
        kept, created = await sync_to_async(services.message_post)(
            room=lobby, author=alice, body="kept", client_id="rb-1"
        )
        assert created and kept.seq == 1  # the rolled-back client_id and seq were never used
        event = (await room.next())["event"]
    assert event["type"] == "message" and event["body"] == "kept" and event["seq"] == 1


async def test_rolled_back_edit_delete_and_ban_reach_nobody(alice, bob, lobby):
    """Edits, deletes and bans rolled back with their transaction change nothing and send nothing."""
    message, _ = await sync_to_async(services.message_post)(room=lobby, author=alice, body="original")

    def edit_delete_ban_then_fail() -> None:
        with transaction.atomic():
            services.message_edit(room=lobby, user=alice, message_id=message.pk, body="edited")
            services.message_delete(room=lobby, user=alice, message_id=message.pk)
            services.member_ban(membership=Membership.objects.get(room=lobby, user=bob))
            raise Boom

    async with GroupListener("room.lobby") as room, GroupListener(broadcast.user_group(bob.pk)) as bobs:
        with pytest.raises(Boom):
            await sync_to_async(edit_delete_ban_then_fail)()
        stored = await sync_to_async(Message.objects.get)(pk=message.pk)
        assert stored.body == "original" and not stored.is_deleted and stored.edited_at is None
        assert not (await sync_to_async(Membership.objects.get)(room=lobby, user=bob)).banned
        # Markers, committed: each group's first event must be its marker.
        await sync_to_async(services.message_post)(room=lobby, author=alice, body="marker")
        await broadcast.auser_send(bob.pk, {"type": "marker"})
        assert (await room.next())["event"]["body"] == "marker"
        assert (await bobs.next())["event"] == {"type": "marker"}


# --- refusals ----------------------------------------------------------------------


def test_refused_posts_store_nothing_and_consume_no_seq(lobby, make_user):
    """Non-members, banned and muted members are refused with their codes; seq stays untouched."""
    outsider, banned, muted = make_user("outsider"), make_user("banned"), make_user("muted")
    Membership.objects.create(room=lobby, user=banned, banned=True)
    Membership.objects.create(room=lobby, user=muted, muted_until=timezone.now() + timedelta(minutes=5))
    for user, code in ((outsider, "forbidden"), (banned, "banned"), (muted, "muted")):
        with pytest.raises(services.ServiceError) as info:
            services.message_post(room=lobby, author=user, body="hi")
        assert info.value.code == code
    assert Message.objects.count() == 0
    lobby.refresh_from_db()
    assert lobby.last_seq == 0


def test_room_enter_rules(lobby, make_user):
    """Public rooms make a membership on first entry; private rooms need one; bans and unknown rooms refuse."""
    alice, bob = make_user("alice"), make_user("bob")
    services.room_create(slug="secret", title="Secret", is_public=False, created_by=bob)
    room, membership = services.room_enter(slug="lobby", user=alice)
    assert room == lobby and membership.role == Membership.Role.MEMBER
    assert services.room_enter(slug="lobby", user=alice)[1].pk == membership.pk  # no second membership
    for slug, code in (("secret", "forbidden"), ("nowhere", "room_not_found")):
        with pytest.raises(services.ServiceError) as info:
            services.room_enter(slug=slug, user=alice)
        assert info.value.code == code
    assert not Membership.objects.filter(user=alice, room__slug="secret").exists()
    assert services.room_enter(slug="secret", user=bob)[1].is_moderator  # the creator moderates
    services.member_ban(membership=membership)
    with pytest.raises(services.ServiceError) as info:
        services.room_enter(slug="lobby", user=alice)
    assert info.value.code == "banned"
    services.member_unban(membership=membership)
    assert services.room_enter(slug="lobby", user=alice)[0] == lobby


def test_room_create_validates_the_slug(make_user):
    """room_create refuses slugs the protocol could never address, and duplicates."""
    alice = make_user("alice")
    for slug in ("../etc", "Lobby", "", "a" * 65, "lobby\n", "١٢٣"):
        with pytest.raises(ValidationError):
            services.room_create(slug=slug, title="x", created_by=alice)
    services.room_create(slug="ok-1", title="ok")
    with pytest.raises(ValidationError):
        services.room_create(slug="ok-1", title="again")
    assert list(Room.objects.values_list("slug", flat=True)) == ["ok-1"]
    assert Membership.objects.count() == 0


def test_edit_and_delete_rights(alice, bob, lobby):
    """Only the author edits; the author or a moderator deletes; a deleted message is gone for both."""
    message, _ = services.message_post(room=lobby, author=alice, body="mine")
    with pytest.raises(services.ServiceError) as info:
        services.message_edit(room=lobby, user=bob, message_id=message.pk, body="theirs")
    assert info.value.code == "forbidden"
    with pytest.raises(services.ServiceError) as info:
        services.message_delete(room=lobby, user=bob, message_id=message.pk)
    assert info.value.code == "forbidden"
    Membership.objects.filter(room=lobby, user=bob).update(role=Membership.Role.MODERATOR)
    services.message_delete(room=lobby, user=bob, message_id=message.pk)
    for call in (
        lambda: services.message_edit(room=lobby, user=alice, message_id=message.pk, body="again"),
        lambda: services.message_delete(room=lobby, user=alice, message_id=message.pk),
    ):
        with pytest.raises(services.ServiceError) as info:
            call()
        assert info.value.code == "message_not_found"
    assert Message.objects.get(pk=message.pk).body == "mine"


async def test_committed_edit_and_delete_are_broadcast_after_commit(alice, lobby):
    """message.updated and message.deleted reach the room's group, in order, once committed."""
    message, _ = await sync_to_async(services.message_post)(room=lobby, author=alice, body="draft")
    async with GroupListener("room.lobby") as room:
        await sync_to_async(services.message_edit)(room=lobby, user=alice, message_id=message.pk, body="final")
        await sync_to_async(services.message_delete)(room=lobby, user=alice, message_id=message.pk)
        updated = (await room.next())["event"]
        deleted = (await room.next())["event"]
    assert updated["type"] == "message.updated" and updated["body"] == "final" and updated["seq"] == 1
    assert deleted == {"type": "message.deleted", "room": "lobby", "seq": 1, "id": message.pk}


async def test_ban_sends_room_remove_to_the_user_after_commit(alice, bob, lobby):
    """member_ban tells every socket of the user to leave the room (a control), then sends them the new standing."""
    membership = await sync_to_async(Membership.objects.get)(room=lobby, user=bob)
    async with GroupListener(broadcast.user_group(bob.pk)) as bobs:
        await sync_to_async(services.member_ban)(membership=membership)
        control = await bobs.next()
        standing = await bobs.next()
    assert control["type"] == broadcast.CONTROL
    assert (control["action"], control["room"], control["reason"]) == ("room_remove", "lobby", "banned")
    assert standing["event"] == {"type": "membership", "room": "lobby", "role": "member", "muted_until": None,
                                 "banned": True}


# --- membership changes -----------------------------------------------------------


async def test_membership_update_sends_only_what_changed_after_commit(alice, bob, lobby):
    """A mute or role change reaches the user's sockets as one membership event; no change sends nothing."""
    membership = await sync_to_async(Membership.objects.get)(room=lobby, user=bob)
    until = timezone.now() + timedelta(minutes=10)
    async with GroupListener(broadcast.user_group(bob.pk)) as bobs:
        await sync_to_async(services.membership_update)(
            membership=membership, role="moderator", muted_until=until, banned=False)
        await sync_to_async(services.membership_update)(
            membership=membership, role="moderator", muted_until=until, banned=False)  # unchanged
        await broadcast.auser_send(bob.pk, {"type": "marker"})
        first, second = await bobs.next(), await bobs.next()
    assert first["event"] == {"type": "membership", "room": "lobby", "role": "moderator",
                              "muted_until": until.isoformat(), "banned": False}
    assert second["event"] == {"type": "marker"}
    stored = await sync_to_async(Membership.objects.get)(pk=membership.pk)
    assert (stored.role, stored.muted_until, stored.banned) == ("moderator", until, False)


def test_membership_update_refuses_an_unknown_role(bob, lobby):
    """A role outside the choices is refused and nothing is stored."""
    membership = Membership.objects.get(room=lobby, user=bob)
    with pytest.raises(ValueError):
        services.membership_update(membership=membership, role="overlord", muted_until=None, banned=False)
    assert Membership.objects.get(pk=membership.pk).role == "member"


async def test_membership_added_banned_or_deleted_takes_the_sockets_out(bob, lobby, make_user):
    """membership_add with a ban, and membership_delete, send room_remove to the user after commit."""
    carol = await sync_to_async(make_user)("carol")
    membership = await sync_to_async(Membership.objects.get)(room=lobby, user=bob)
    async with GroupListener(broadcast.user_group(carol.pk)) as carols, \
            GroupListener(broadcast.user_group(bob.pk)) as bobs:
        await sync_to_async(services.membership_add)(room=lobby, user=carol, banned=True)
        removed, standing = await carols.next(), await carols.next()
        await sync_to_async(services.membership_delete)(membership=membership)
        kicked = await bobs.next()
    assert (removed["action"], removed["room"], removed["reason"]) == ("room_remove", "lobby", "banned")
    assert standing["event"]["banned"] is True
    assert (kicked["action"], kicked["room"], kicked["reason"]) == ("room_remove", "lobby", "kicked")
    assert not await sync_to_async(Membership.objects.filter(pk=membership.pk).exists)()


# --- banned words in the write path -------------------------------------------------


async def test_masked_word_never_leaves_the_server_unmasked(alice, bob, lobby):
    """A mask word is starred out before commit: in the room's message event, in history, and in the mention push."""
    await sync_to_async(services.banned_word_add)(word="darn", action="mask")
    async with GroupListener("room.lobby") as room, GroupListener(broadcast.user_group(bob.pk)) as bobs:
        message, _ = await sync_to_async(services.message_post)(room=lobby, author=alice, body="@bob well DARN it")
        event = (await room.next())["event"]
        await sync_to_async(services.mentions_notify)(message_id=message.pk)
        mention = (await bobs.next())["event"]
    assert event["type"] == "message" and event["body"] == "@bob well **** it"
    assert mention["type"] == "mention" and mention["body"] == "@bob well **** it"
    stored = await sync_to_async(Message.objects.get)(pk=message.pk)
    assert stored.body == "@bob well **** it" and stored.moderated_at is not None
    resume = await sync_to_async(selectors.room_resume)(room=lobby, last_seq=0, page=50, cap=500)
    assert [m.body for m in resume.messages] == ["@bob well **** it"]


async def test_hide_word_refuses_the_post_and_stores_nothing(alice, lobby):
    """A hide word refuses the post with blocked: nothing stored, no seq used, nothing broadcast."""
    await sync_to_async(services.banned_word_add)(word="spoiler", action="hide")
    async with GroupListener("room.lobby") as room:
        with pytest.raises(services.ServiceError) as info:
            await sync_to_async(services.message_post)(room=lobby, author=alice, body="SPOILER: it was him")
        assert info.value.code == "blocked"
        await sync_to_async(services.message_post)(room=lobby, author=alice, body="marker")
        assert (await room.next())["event"]["body"] == "marker"
    assert await sync_to_async(list)(Message.objects.values_list("body", "seq")) == [("marker", 1)]


def test_edits_are_filtered_and_a_resend_still_gets_its_original(alice, lobby):
    """An edit is masked or refused like a post; a resend of a message stored before the ban returns the original."""
    earlier, _ = services.message_post(room=lobby, author=alice, body="spoiler ahead", client_id="c1")
    services.banned_word_add(word="darn", action="mask")
    services.banned_word_add(word="spoiler", action="hide")
    again, created = services.message_post(room=lobby, author=alice, body="spoiler ahead", client_id="c1")
    assert (again.pk, created) == (earlier.pk, False)
    edited = services.message_edit(room=lobby, user=alice, message_id=earlier.pk, body="darn, no")
    assert edited.body == "****, no" and edited.moderated_at is not None
    with pytest.raises(services.ServiceError) as info:
        services.message_edit(room=lobby, user=alice, message_id=earlier.pk, body="spoiler!")
    assert info.value.code == "blocked"
    assert Message.objects.get(pk=earlier.pk).body == "****, no"


def test_a_change_of_words_applies_to_the_next_message_on_this_process(alice, lobby, settings):
    """Adding, changing and removing a word through the services applies to the next post at once, cache or not."""
    settings.REALTIME = {**settings.REALTIME, "MODERATION_CACHE_SECONDS": 3600}
    assert services.message_post(room=lobby, author=alice, body="heck")[0].body == "heck"  # empty list cached
    word = services.banned_word_add(word="heck", action="mask")
    assert services.message_post(room=lobby, author=alice, body="heck")[0].body == "****"
    services.banned_word_update(banned_word=word, word="heck", action="hide")
    with pytest.raises(services.ServiceError):
        services.message_post(room=lobby, author=alice, body="heck")
    services.banned_word_delete(banned_word=word)
    assert services.message_post(room=lobby, author=alice, body="heck")[0].body == "heck"


def test_other_processes_see_a_change_within_the_cache_bound(alice, lobby, settings, monkeypatch,
                                                             django_assert_num_queries):
    """A change committed elsewhere applies here once MODERATION_CACHE_SECONDS have passed, not before.

    Inside the bound the filter costs no query; past it, one (the list's version) while
    nothing changed, and the list is read again only when the version moved.
    """
    settings.REALTIME = {**settings.REALTIME, "MODERATION_CACHE_SECONDS": 30}
    now = [1000.0]
    monkeypatch.setattr(moderation, "monotonic", lambda: now[0])
    with django_assert_num_queries(2):  # first use: the version, then the words
        assert not moderation.word_filter().active
    with django_assert_num_queries(0):
        moderation.word_filter()
    # Another process adds a word: its commit drops its own filter, not this one.
    with monkeypatch.context() as elsewhere:
        elsewhere.setattr(moderation, "word_filter_invalidate", lambda: None)
        services.banned_word_add(word="heck", action="mask")
    now[0] += 29
    assert services.message_post(room=lobby, author=alice, body="heck")[0].body == "heck"
    now[0] += 2
    assert services.message_post(room=lobby, author=alice, body="heck")[0].body == "****"
    now[0] += 31
    with django_assert_num_queries(1):  # the version again, unchanged: the compiled filter is kept
        assert moderation.word_filter().active


def test_word_filter_matches_whole_words_longest_first():
    """Words match case-insensitively as whole words, punctuation at their edges included, the longest first."""
    word_filter = moderation.word_filter_build(
        version=1, words=[("darn", "mask"), ("darned", "mask"), ("f*ck", "mask"), ("spoiler", "hide")])
    assert word_filter.masked("Darned darn, darning f*ck!") == "****** ****, darning ****!"
    assert word_filter.blocks("a SPOILER.") and not word_filter.blocks("spoilers")
    assert not moderation.word_filter_build(version=2, words=[]).active


def test_banned_word_add_refuses_blanks_and_duplicates():
    """Words are stripped; a blank or repeated word is refused and the list's version does not move."""
    services.banned_word_add(word="  heck ", action="mask")
    assert list(BannedWord.objects.values_list("word", flat=True)) == ["heck"]
    version = moderation.word_filter_load().version
    for word in ("   ", "heck"):
        with pytest.raises(ValidationError):
            services.banned_word_add(word=word, action="mask")
    assert moderation.word_filter_load().version == version


# --- formatting and replies ----------------------------------------------------------


def test_post_stores_the_rendered_html_once_and_reads_never_render(alice, lobby, monkeypatch):
    """The body's HTML is rendered when the message is written and stored; history reads the stored string."""
    from chat import events, markup

    calls: list[str] = []
    real = markup.body_render
    monkeypatch.setattr(markup, "body_render", lambda body: calls.append(body) or real(body))
    message, _ = services.message_post(room=lobby, author=alice, body="**hi** @bob <b>x</b>")
    assert calls == ["**hi** @bob <b>x</b>"]
    stored = Message.objects.get(pk=message.pk)
    assert stored.body == "**hi** @bob <b>x</b>"  # the source stays as typed
    assert stored.html == '<p><strong>hi</strong> <span class="mention">@bob</span> &lt;b&gt;x&lt;/b&gt;</p>'
    page = events.message_events(selectors.room_latest(room=lobby, limit=10))
    assert page[0]["html"] == stored.html
    assert calls == ["**hi** @bob <b>x</b>"]


async def test_edit_re_renders_and_broadcasts_the_new_html(alice, lobby):
    """An edit stores the new body's HTML and message.updated carries it."""
    message, _ = await sync_to_async(services.message_post)(room=lobby, author=alice, body="plain")
    async with GroupListener("room.lobby") as room:
        await sync_to_async(services.message_edit)(room=lobby, user=alice, message_id=message.pk, body="*now*")
        updated = (await room.next())["event"]
    assert updated["html"] == "<p><em>now</em></p>"
    assert (await sync_to_async(Message.objects.get)(pk=message.pk)).html == "<p><em>now</em></p>"


def test_staff_edit_and_moderation_mask_re_render(alice, lobby):
    """The admin's edit and the moderation hook's mask both leave html in step with the body."""
    message, _ = services.message_post(room=lobby, author=alice, body="first")
    services.message_edit_by_staff(message=message, body="**second**")
    assert Message.objects.get(pk=message.pk).html == "<p><strong>second</strong></p>"
    BannedWord.objects.create(word="heck", action=BannedWord.Action.MASK)  # no bump: the post path misses it
    late, _ = services.message_post(room=lobby, author=alice, body="what the heck")
    services.message_moderate(message_id=late.pk)
    late.refresh_from_db()
    assert late.body == "what the ****" and late.html == "<p>what the ****</p>"


def test_masked_post_renders_the_masked_body(alice, lobby):
    """A masked word is starred out in the stored html too, not only in the body."""
    services.banned_word_add(word="darn", action="mask")
    message, _ = services.message_post(room=lobby, author=alice, body="oh darn it, *darn*")
    assert message.body == "oh **** it, ******" and "darn" not in message.html


def test_reply_quotes_an_earlier_message_of_the_same_room(alice, bob, lobby):
    """reply_to is the seq of an earlier message of the room; the event carries its author and an excerpt."""
    from chat import events

    bob.first_name, bob.last_name = "Bob", "Builder"
    bob.save()
    original, _ = services.message_post(room=lobby, author=bob, body="can   we\nfix it? " + "x" * 300)
    reply, _ = services.message_post(room=lobby, author=alice, body="yes", reply_to=original.seq)
    assert Message.objects.get(pk=reply.pk).reply_to_id == original.pk
    quote = events.message_event(reply)["reply_to"]
    assert quote["seq"] == 1 and quote["author"] == "bob" and quote["author_name"] == "Bob Builder"
    assert quote["deleted"] is False and quote["excerpt"].startswith("can we fix it? xxx")
    assert len(quote["excerpt"]) == events.EXCERPT_CHARS
    assert "reply_to" not in events.message_event(original)
    # Deleting the original turns the quote into a tombstone, in history too.
    services.message_delete(room=lobby, user=bob, message_id=original.pk)
    page = events.message_events(selectors.room_latest(room=lobby, limit=10))
    assert page[1]["reply_to"] == {"seq": 1, "id": original.pk, "author": "bob", "author_name": "Bob Builder",
                                   "deleted": True, "excerpt": ""}


def test_reply_to_another_room_a_future_or_a_deleted_message_is_refused(alice, lobby):
    """A reply_to that is not an earlier, live message of this room is message_not_found and stores nothing."""
    other = services.room_create(slug="other", title="Other", created_by=alice)
    services.message_post(room=other, author=alice, body="elsewhere")  # seq 1 of another room
    services.message_post(room=other, author=alice, body="elsewhere 2")
    gone, _ = services.message_post(room=lobby, author=alice, body="gone")
    services.message_delete(room=lobby, user=alice, message_id=gone.pk)
    for seq in (2, 99, gone.seq, 0):
        with pytest.raises(services.ServiceError) as info:
            services.message_post(room=lobby, author=alice, body="re", reply_to=seq)
        assert info.value.code == "message_not_found"
    assert seqs(lobby) == [1]
    assert Room.objects.get(pk=lobby.pk).last_seq == 1  # a refused reply takes no seq


def test_posting_again_reads_no_avatar_and_a_reply_costs_one_lookup(alice, lobby):
    """The write path's queries: the author's avatar is read once per user object, a reply adds its one lookup."""
    from django.test.utils import CaptureQueriesContext

    services.message_post(room=lobby, author=alice, body="warm")  # reads alice's avatar (none) once
    with CaptureQueriesContext(connection) as plain:
        services.message_post(room=lobby, author=alice, body="**again**")
    assert not [q for q in plain.captured_queries if "chat_avatar" in q["sql"]]
    with CaptureQueriesContext(connection) as reply:
        services.message_post(room=lobby, author=alice, body="re", reply_to=1)
    assert len(reply.captured_queries) == len(plain.captured_queries) + 1
