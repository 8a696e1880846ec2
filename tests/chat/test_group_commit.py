"""Group commit (chat.group_commit, chat.services.messages_post): batches keep every guarantee of one message.

Each room's seqs stay 1, 2, 3 … with no gap or repeat across the rooms of one batch; a
client_id is stored once, even repeated inside a batch; a refusal is that draft's alone;
nothing is broadcast before the batch commits, and a rolled-back batch reaches nobody.
Runs on SQLite and on PostgreSQL (``TEST_DATABASE=postgres``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from chat import errors, services
from chat.group_commit import GroupCommit
from chat.models import Membership, Message, Room
from tests.chat.test_consumers import connect, drain, join, recv
from tests.chat.test_services import Boom, GroupListener

pytestmark = pytest.mark.django_db(transaction=True)

ROOMS = 4


@pytest.fixture
def rooms(db):
    return [Room.objects.create(slug=f"gc-{i}", title=f"gc {i}") for i in range(ROOMS)]


@pytest.fixture
def posters(make_user, rooms):
    users = [make_user(f"poster{i}") for i in range(3)]
    for user in users:
        for room in rooms:
            services.room_enter(slug=room.slug, user=user)
    return users


def room_seqs(room: Room) -> list[int]:
    return list(Message.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))


def test_a_batch_over_many_rooms_gets_gap_free_seqs_each_client_id_once_and_refusals_alone(rooms, posters):
    """One batch across rooms: each room's seqs continue 1..N; a client_id stored before, or twice in
    the batch, is stored once (the repeats get the original); a muted author's draft alone is refused
    and takes no seq."""
    alice, bob, carol = posters
    first, _ = services.message_post(room=rooms[0], author=alice, body="before", client_id="old")
    Membership.objects.filter(user=carol).update(muted_until=timezone.now() + timedelta(hours=1))
    drafts = [services.MessageDraft(rooms[i % ROOMS], (alice, bob)[i % 2], f"m{i}", f"c{i}") for i in range(20)]
    drafts.insert(3, services.MessageDraft(rooms[0], alice, "resend", "old"))
    drafts.insert(7, services.MessageDraft(rooms[1], carol, "muted", "mute-1"))
    drafts.append(services.MessageDraft(rooms[2], alice, "again", "c2"))  # c2 is earlier in this batch

    outcomes = services.messages_post(drafts=drafts)

    assert isinstance(outcomes[7], errors.Muted)
    assert outcomes[3] == (first, False)
    again, created = outcomes[-1]
    assert not created and again.body == "m2"
    stored = [o for o in outcomes if isinstance(o, tuple) and o[1]]
    assert len(stored) == 20
    for room in rooms:
        room.refresh_from_db()
        expected = 1 + 5 if room == rooms[0] else 5
        assert room_seqs(room) == list(range(1, expected + 1))
        assert room.last_seq == expected
    assert Message.objects.filter(client_id="c2").count() == 1
    assert not Message.objects.filter(author=carol).exists()


async def test_posts_queued_while_a_write_is_in_flight_are_written_together(rooms, posters):
    """Posts that arrive together are one transaction (one batch); each poster still gets its own
    outcome, a refusal raised to its poster alone."""
    alice, bob, carol = posters
    await sync_to_async(Membership.objects.filter(user=carol).update)(muted_until=timezone.now() + timedelta(hours=1))
    writer = GroupCommit()
    drafts = [services.MessageDraft(rooms[i % ROOMS], (alice, bob, carol)[i % 3], f"m{i}", f"g{i}")
              for i in range(12)]
    outcomes = await asyncio.gather(*(writer.post(d) for d in drafts), return_exceptions=True)
    assert (writer.batches, writer.drafts) == (1, 12)
    for draft, outcome in zip(drafts, outcomes, strict=True):
        if draft.author == carol:
            assert isinstance(outcome, errors.Muted)
        else:
            message, created = outcome
            assert created and message.body == draft.body and message.pk is not None
    assert await sync_to_async(Message.objects.count)() == 8


async def test_a_batch_is_broadcast_only_after_it_commits(rooms, posters):
    """A batch rolled back reaches nobody and uses no seq; a committed one is published in seq order,
    each event of a message already readable from the database."""
    alice, bob, _ = posters

    def batch_then_fail() -> None:
        with transaction.atomic():
            services.messages_post(drafts=[services.MessageDraft(rooms[0], alice, f"never {i}") for i in range(3)])
            raise Boom

    async with GroupListener(f"room.{rooms[0].slug}") as room:
        with pytest.raises(Boom):
            await sync_to_async(batch_then_fail)()
        drafts = [services.MessageDraft(rooms[i % 2], (alice, bob)[i % 2], f"kept {i}") for i in range(6)]
        await sync_to_async(services.messages_post)(drafts=drafts)
        seen = []
        for _ in range(3):
            event = (await room.next())["event"]
            assert await sync_to_async(Message.objects.filter(pk=event["id"]).exists)()
            seen.append((event["seq"], event["body"]))
    assert seen == [(1, "kept 0"), (2, "kept 2"), (3, "kept 4")]


async def test_concurrent_posters_in_many_rooms_over_sockets(rooms, posters):
    """Every socket of every room posts at once (one client_id twice): each room's members receive
    its messages with seqs 1..N and no gap, each stored once, each readable when it arrives."""
    alice, bob, _ = posters
    sockets = []
    for room in rooms:
        for user in (alice, bob):
            comm = await connect(user)
            await join(comm, room.slug)
            sockets.append((room.slug, user, comm))
    for i, (slug, _, comm) in enumerate(sockets):
        await comm.send_json_to({"type": "message", "room": slug, "body": f"b{i}", "client_id": f"s{i}"})
    await sockets[0][2].send_json_to({"type": "message", "room": sockets[0][0], "body": "b0", "client_id": "s0"})
    for slug, _, comm in sockets:
        got = []
        while len(got) < 2:
            event = await recv(comm, type_="message")
            if event["room"] == slug:
                assert await sync_to_async(Message.objects.filter(pk=event["id"]).exists)()
                got.append(event["seq"])
        assert sorted(got) == [1, 2]
    for room in rooms:
        assert await sync_to_async(room_seqs)(room) == [1, 2]
    assert await sync_to_async(Message.objects.filter(client_id="s0").count)() == 1
    for _, _, comm in sockets:
        await comm.disconnect()


def test_an_invalid_attachment_refuses_its_draft_alone_in_a_batch(rooms, posters):
    """An attachment that is not the author's unsent upload refuses that post (``invalid_attachment``);
    the batch is written again draft by draft, so the others are stored with gap-free seqs."""
    alice, bob, _ = posters
    drafts = [services.MessageDraft(rooms[0], alice, "one"),
              services.MessageDraft(rooms[0], bob, "bad", attachments=(987654,)),
              services.MessageDraft(rooms[0], alice, "two")]
    outcomes = services.messages_post(drafts=drafts)
    assert isinstance(outcomes[1], errors.ChatError) and outcomes[1].code == "invalid_attachment"
    assert [o[0].body for o in (outcomes[0], outcomes[2])] == ["one", "two"]
    assert room_seqs(rooms[0]) == [1, 2]


def test_replies_and_html_in_a_batch(rooms, posters):
    """In a batch each body is rendered to html once and a reply stores its quote; a reply to a seq
    that is not the room's refuses that draft alone (``message_not_found``)."""
    alice, bob, _ = posters
    first, _ = services.message_post(room=rooms[0], author=alice, body="**hi**")
    outcomes = services.messages_post(drafts=[
        services.MessageDraft(rooms[0], bob, "re", reply_to=first.seq),
        services.MessageDraft(rooms[0], bob, "nowhere", reply_to=99),
    ])
    reply, created = outcomes[0]
    assert created and reply.reply_to_id == first.pk and reply.html
    assert isinstance(outcomes[1], errors.MessageNotFound)
    assert first.html and "<strong>" in first.html
    assert room_seqs(rooms[0]) == [1, 2]


async def test_one_sockets_messages_sent_back_to_back_share_writes_and_keep_their_order(rooms, posters, settings):
    """One socket (a bot, the bench's publisher) sending without waiting: its messages take seqs in
    the order it sent them, are written in fewer batches than messages (the next one does not wait
    for the last one's commit), a repeated client_id gets the original back to it alone, and a
    refused one reports an ``error`` with its own client_id while the ones after it go on."""
    from chat.group_commit import group_commit

    settings.REALTIME = {**settings.REALTIME, "RATE_BURST": 1000, "RATE_PER_SECOND": 1000.0}
    alice, bob, _ = posters
    sender, other = await connect(alice), await connect(bob)
    for comm in (sender, other):
        await join(comm, rooms[0].slug)
    before = group_commit().batches
    for i in range(30):
        await sender.send_json_to({"type": "message", "room": rooms[0].slug, "body": f"n{i}", "client_id": f"bb{i}"})
        if i == 10:
            await sender.send_json_to({"type": "message", "room": rooms[0].slug, "body": "n3", "client_id": "bb3"})
        if i == 20:  # not a message this socket may post: an unknown reply target
            await sender.send_json_to({"type": "message", "room": rooms[0].slug, "body": "bad", "client_id": "bad-1",
                                       "reply_to": 10**9})
    seen = []
    while len(seen) < 30:
        event = await recv(other, type_="message")
        seen.append((event["seq"], event["body"]))
    assert seen == [(i + 1, f"n{i}") for i in range(30)]
    mine: list[dict] = []
    while len(mine) < 30 + 1 + 1:  # its 30 broadcasts, the repeat's original, the error
        event = await sender.receive_json_from(timeout=5)
        if event["type"] in ("message", "error"):
            mine.append(event)
    mine += [e for e in await drain(sender) if e["type"] in ("message", "error")]  # and nothing more
    assert sorted(e["seq"] for e in mine if e["type"] == "message") == sorted([*range(1, 31), 4])
    errors_ = [e for e in mine if e["type"] == "error"]
    assert [(e["client_id"], e["request_type"]) for e in errors_] == [("bad-1", "message")]
    assert group_commit().batches - before < 31
    assert await sync_to_async(room_seqs)(rooms[0]) == list(range(1, 31))
    for comm in (sender, other):
        await comm.disconnect()


def test_a_draft_queued_with_a_standing_that_went_stale_is_checked_against_the_database(rooms, posters):
    """A mute that lands while a socket's messages wait in the queue: the socket marks the standing
    they carry stale (its ``membership`` event), and the write reads the membership again, so the
    muted author's queued draft is refused; a fresh standing is trusted as it is (no query)."""
    from chat import selectors

    alice = posters[0]
    membership = selectors.membership_of(room=rooms[0], user=alice)
    standing = selectors.Standing.of(membership)
    Membership.objects.filter(pk=membership.pk).update(muted_until=timezone.now() + timedelta(hours=1))
    trusted = services.messages_post(drafts=[services.MessageDraft(rooms[0], alice, "before the event", "st-1",
                                                                   membership=standing)])
    assert trusted[0][1] is True
    standing.stale = True
    refused = services.messages_post(drafts=[services.MessageDraft(rooms[0], alice, "after it", "st-2",
                                                                   membership=standing)])
    assert isinstance(refused[0], errors.Muted)
