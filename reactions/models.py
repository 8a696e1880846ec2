"""One user's emoji on one message."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from chat.models import Message


class Reaction(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reactions")
    emoji = models.CharField(max_length=16)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user", "emoji"], name="reaction_unique_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.emoji} on {self.message}"
