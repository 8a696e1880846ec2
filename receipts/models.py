"""How far each user has read in each room."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from chat.models import Room


class ReadPosition(models.Model):
    """The highest seq the user has seen in the room (it only moves forward)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="read_positions")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="read_positions")
    seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "room"], name="read_position_unique")]

    def __str__(self) -> str:
        return f"{self.user} read {self.room} to {self.seq}"
