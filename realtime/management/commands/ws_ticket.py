"""``manage.py ws_ticket USERNAME``: print a single-use WebSocket ticket (last line)."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from realtime.auth import ticket_issue


class Command(BaseCommand):
    help = "Print a short-lived, single-use WebSocket ticket for USERNAME as the last line."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--ttl", type=int, default=None, help="lifetime in seconds (default: WS_TICKET_TTL)")

    def handle(self, *args, username: str, ttl: int | None, **options):
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {username!r}")
        ticket = ticket_issue(user=user, ttl=ttl)
        ttl = ttl or settings.REALTIME["TICKET_TTL"]
        self.stderr.write(f"Ticket for {username}, valid {ttl} s, single use. Connect to /ws/chat/?ticket=…")
        self.stdout.write(ticket)
