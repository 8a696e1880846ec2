"""The admin of log-in lockouts: axes' own, plus when each row's lockout lifts and two unlock actions.

axes keeps one row per account, address and user agent, and its status column judges
each row alone; a lockout is the sum over an account's rows, or an address's. So the
list says until when each row's account or address is locked out, and staff unlock a
whole account or a whole address at once.
"""

from __future__ import annotations

from datetime import datetime

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from realtime.lockout import lockout_until

admin.site.unregister(AccessAttempt)


@admin.register(AccessAttempt)
class LockoutAdmin(AccessAttemptAdmin):
    """Access attempts with their lockout's end; unlocking by account or by address."""

    list_display = [*AccessAttemptAdmin.list_display, "locked_out_until"]
    actions = [*AccessAttemptAdmin.actions, "unlock_accounts", "unlock_addresses"]

    @admin.display(description="Locked out until", empty_value="not locked out")
    def locked_out_until(self, obj: AccessAttempt) -> datetime | None:
        return lockout_until(username=obj.username, ip_address=obj.ip_address)

    @admin.action(description="Unlock the selected rows' accounts (every address)", permissions=["delete"])
    def unlock_accounts(self, request: HttpRequest, queryset: QuerySet) -> None:
        names = set(queryset.exclude(username=None).values_list("username", flat=True))
        count, _ = AccessAttempt.objects.filter(username__in=names).delete()
        self.message_user(
            request, f"Unlocked {len(names)} account(s): {count} attempt row(s) deleted.", messages.SUCCESS
        )

    @admin.action(description="Unlock the selected rows' addresses (every account)", permissions=["delete"])
    def unlock_addresses(self, request: HttpRequest, queryset: QuerySet) -> None:
        addresses = set(queryset.exclude(ip_address=None).values_list("ip_address", flat=True))
        count, _ = AccessAttempt.objects.filter(ip_address__in=addresses).delete()
        self.message_user(
            request, f"Unlocked {len(addresses)} address(es): {count} attempt row(s) deleted.", messages.SUCCESS
        )
