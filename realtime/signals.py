"""Account changes that must reach open sockets within seconds.

A log-out ends the sockets opened from that session (``session_end``); any other change
to a user (deactivation, password change) makes every socket of theirs re-check its
session at once (``recheck``), which closes those no longer valid with the right code.
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_save
from django.dispatch import receiver

from realtime import broadcast
from realtime.auth import session_key_digest

logger = logging.getLogger(__name__)


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs) -> None:
    if user is None or request is None or not getattr(request, "session", None):
        return
    digest = session_key_digest(request.session.session_key)
    broadcast.user_control_on_commit(user.pk, "session_end", session=digest)


@receiver(post_save, sender=get_user_model())
def _user_saved(sender, instance, created, update_fields=None, **kwargs) -> None:
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return
    broadcast.user_control_on_commit(instance.pk, "recheck")
