"""chat.services with writers in two operating-system processes, on the test's database engine.

Threads of one process share its connection handling; two processes share only the
database, as two web processes (or a web process and a Celery worker) do. ``make test``
runs this module on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from chat import services
from chat.models import Message
from tests import services as test_services

pytestmark = pytest.mark.django_db(transaction=True)

# Each writer posts PER_WRITER messages; the first SHARED of each writer's client_ids are
# also used by the other writer (same author), so each of those must be stored once.
PER_WRITER = 60
SHARED = 20

WRITER = textwrap.dedent(
    """
    import sys, django
    django.setup()
    from django.contrib.auth import get_user_model
    from chat import services
    from chat.models import Room
    name, author = sys.argv[1], sys.argv[2]
    room = Room.objects.get(slug="lobby")
    user = get_user_model().objects.get(username=author)
    sys.stdin.readline()  # both writers start together
    created = 0
    for i in range({per_writer}):
        cid = f"shared-{{i}}" if i < {shared} else f"{{name}}-{{i}}"
        _, was_created = services.message_post(room=room, author=user, body=f"{{name}} {{i}}", client_id=cid)
        created += was_created
    print(created)
    """
).format(per_writer=PER_WRITER, shared=SHARED)


def _writers_created(app_env: dict[str, str], code: str, *args: str) -> list[int]:
    """Run ``code`` in two writer processes (w1, w2) released at once; how many messages each created."""
    env = test_services.app_env(**{k: v for k, v in app_env.items() if k in ("DATABASE_URL", "SQLITE_PATH",
                                                                              "REDIS_URL", "CELERY_BROKER_URL")})
    writers = [
        subprocess.Popen([sys.executable, "-c", code, name, *args], env=env, cwd=test_services.ROOT,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("w1", "w2")
    ]
    for w in writers:
        w.stdin.write("go\n")
        w.stdin.flush()
    results = [w.communicate(timeout=120) for w in writers]
    for w, (_out, err) in zip(writers, results, strict=True):
        assert w.returncode == 0, err[-3000:]
    return [int(out.strip()) for out, _ in results]


def test_two_processes_posting_at_once_get_gap_free_seqs_and_each_client_id_once(
    alice, lobby, app_env
):
    """Two processes posting to one room at once: seqs are 1..N with no gap or repeat, and a client_id
    both of them send is stored once (the other gets the original back)."""
    services.room_enter(slug="lobby", user=alice)
    created = sum(_writers_created(app_env, WRITER, "alice"))

    expected = 2 * PER_WRITER - SHARED
    assert created == expected, "each shared client_id was created by exactly one writer"
    seqs = list(Message.objects.filter(room=lobby).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, expected + 1))
    lobby.refresh_from_db()
    assert lobby.last_seq == expected
    shared = Message.objects.filter(room=lobby, client_id__startswith="shared-")
    assert shared.count() == SHARED


BATCH_WRITER = textwrap.dedent(
    """
    import sys, django
    django.setup()
    from django.contrib.auth import get_user_model
    from chat import services
    from chat.models import Room
    name = sys.argv[1]
    rooms = list(Room.objects.filter(slug__startswith="many-").order_by("slug"))
    user = get_user_model().objects.get(username="alice")
    sys.stdin.readline()  # both writers start together
    created = 0
    for b in range({batches}):
        drafts = []
        for j in range({per_batch}):
            i = b * {per_batch} + j
            cid = f"shared-{{i}}" if i % 3 == 0 else f"{{name}}-{{i}}"
            drafts.append(services.MessageDraft(rooms[i % len(rooms)], user, f"{{name}} {{i}}", cid))
        created += sum(1 for o in services.messages_post(drafts=drafts) if o[1])
    print(created)
    """
)


def test_two_processes_posting_batches_over_many_rooms_keep_every_rooms_seqs_gap_free(alice, app_env):
    """Two processes writing batches that span the same rooms at once (group commit): every room's
    seqs are 1..N with no gap or repeat, no deadlock, and a client_id both send is stored once."""
    from chat.models import Room

    batches, per_batch, room_count = 6, 12, 5
    rooms = [Room.objects.create(slug=f"many-{i}", title=f"many {i}") for i in range(room_count)]
    for room in rooms:
        services.room_enter(slug=room.slug, user=alice)
    total = batches * per_batch
    shared = len(range(0, total, 3))
    expected = 2 * total - shared
    assert sum(_writers_created(app_env, BATCH_WRITER.format(batches=batches, per_batch=per_batch))) == expected
    for room in rooms:
        seqs = list(Message.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
        room.refresh_from_db()
        assert room.last_seq == len(seqs)
    assert Message.objects.filter(room__in=rooms).count() == expected
    assert Message.objects.filter(client_id__startswith="shared-").count() == shared
