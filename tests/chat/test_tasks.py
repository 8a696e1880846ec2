"""Celery task wrappers and their services: idempotent, so redelivery never posts twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat import moderation, services, tasks
from chat.models import Announcement, Message

pytestmark = pytest.mark.django_db(transaction=True)


def test_room_reminder_run_twice_with_one_task_id_announces_once(lobby, settings):
    """A schedule's task redelivered with the same id creates one announcement."""
    first = tasks.room_reminder.apply(args=["lobby", "Stand-up in 5"], task_id="run-1").get()
    again = tasks.room_reminder.apply(args=["lobby", "Stand-up in 5"], task_id="run-1").get()
    other = tasks.room_reminder.apply(args=["lobby", "Stand-up in 5"], task_id="run-2").get()
    assert first == again != other
    assert Announcement.objects.filter(room=lobby).count() == 2


def test_future_announcement_waits_for_beat_and_due_ones_are_queued_once(lobby):
    """A scheduled announcement is not queued before its time; when due, beat's sweep queues it once."""
    later = services.announcement_create(body="later", room=lobby, send_at=timezone.now() + timedelta(hours=1))
    assert later.status == "scheduled" and later.queued_at is None
    assert services.announcements_queue_due() == 0
    Announcement.objects.filter(pk=later.pk).update(send_at=timezone.now() - timedelta(seconds=1))
    assert services.announcements_queue_due() == 1
    assert services.announcements_queue_due() == 0  # queued recently: not again


def test_delivered_announcement_is_not_pushed_again(lobby):
    """announcement_deliver records the delivery; a second run changes nothing."""
    a = services.announcement_create(body="hi", room=lobby, send_at=timezone.now() + timedelta(days=1))
    delivered = services.announcement_deliver(announcement_id=a.pk)
    sent_at = delivered.sent_at
    assert sent_at is not None and delivered.sockets == 0
    assert services.announcement_deliver(announcement_id=a.pk).sent_at == sent_at


@pytest.fixture(autouse=True)
def _fresh_word_filter():
    """Each test starts and ends with this process's banned-words filter unloaded (the database is flushed)."""
    moderation.word_filter_invalidate()
    yield
    moderation.word_filter_invalidate()


def test_moderation_hook_masks_or_hides_what_a_stale_process_let_through_and_is_idempotent(
    make_user, lobby, monkeypatch
):
    """message_moderate re-reads the list: messages stored before a word was banned are masked or tombstoned, once."""
    alice = make_user("alice")
    services.room_enter(slug="lobby", user=alice)
    masked, _ = services.message_post(room=lobby, author=alice, body="what the Heck, heckler")
    hidden, _ = services.message_post(room=lobby, author=alice, body="SPOILER: it was him")
    with monkeypatch.context() as elsewhere:  # banned on another process: this one's cached list is stale
        elsewhere.setattr(moderation, "word_filter_invalidate", lambda: None)
        services.banned_word_add(word="heck", action="mask")
        services.banned_word_add(word="spoiler", action="hide")
    tasks.message_moderate.apply(args=[masked.pk]).get()
    tasks.message_moderate.apply(args=[hidden.pk]).get()
    masked.refresh_from_db()
    hidden.refresh_from_db()
    assert masked.body == "what the ****, heckler"
    assert hidden.is_deleted and hidden.body == "SPOILER: it was him"  # kept for moderators, never served
    edited_at = masked.edited_at
    services.message_moderate(message_id=masked.pk)
    masked.refresh_from_db()
    assert masked.edited_at == edited_at


def test_moderation_hook_is_queued_only_while_words_are_banned(make_user, lobby, monkeypatch):
    """No banned word, no moderation task: the broker is skipped; with one, each message queues the hook."""
    alice = make_user("alice")
    services.room_enter(slug="lobby", user=alice)
    queued = []
    monkeypatch.setattr(services, "_enqueue_on_commit", lambda task, *args: queued.append((task.name, args)))
    services.message_post(room=lobby, author=alice, body="hello")
    services.banned_word_add(word="heck", action="mask")
    second, _ = services.message_post(room=lobby, author=alice, body="hello again")
    assert queued == [("chat.tasks.message_moderate", (second.pk,))]


def test_mentions_notify_only_users_who_can_see_the_room(make_user, lobby):
    """Mentioned users who are banned, inactive or the author are not notified."""
    alice, bob, carol, dave = (make_user(n) for n in ("alice", "bob", "carol", "dave"))
    services.room_enter(slug="lobby", user=alice)
    services.room_enter(slug="lobby", user=carol)
    services.member_ban(membership=carol.memberships.get())
    dave.is_active = False
    dave.save()
    message, _ = services.message_post(room=lobby, author=alice, body="@bob @carol @dave @alice @nobody hi")
    assert services.mentions_notify(message_id=message.pk) == ["bob"]
    assert Message.objects.count() == 1
