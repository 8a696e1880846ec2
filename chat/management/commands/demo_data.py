"""``manage.py demo_data``: the public room ``lobby`` and demo users (idempotent)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from chat.models import Membership, Room

DEMO_PASSWORD = "demo-pass-123"
DEMO_USERS = [("alice", False), ("bob", False), ("carol", False), ("admin", True)]
ROOMS = [("lobby", "Lobby"), ("random", "Random")]


class Command(BaseCommand):
    help = "Create the demo rooms and users (alice, bob, carol, admin) if they are missing."

    def handle(self, *args, **options):
        User = get_user_model()
        created = []
        for name, staff in DEMO_USERS:
            if not User.objects.filter(username=name).exists():
                # One insert with the password set: a second save() of a new user would
                # ask its (non-existent) open sockets to re-check their session.
                User.objects.create_user(name, password=DEMO_PASSWORD, is_staff=staff, is_superuser=staff)
                created.append(name)
        admin = User.objects.get(username="admin")
        for slug, title in ROOMS:
            room, _ = Room.objects.get_or_create(slug=slug, defaults={"title": title, "created_by": admin})
            Membership.objects.get_or_create(room=room, user=admin, defaults={"role": Membership.Role.MODERATOR})
        names = ", ".join(n for n, _ in DEMO_USERS)
        self.stdout.write(
            f"Demo users: {names} (password: {DEMO_PASSWORD}; 'admin' is staff). Rooms: lobby, random."
            + (f" Created now: {', '.join(created)}." if created else "")
        )
