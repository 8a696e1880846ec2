"""Forms of the chat pages."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm

from chat.models import Room


class SignupForm(UserCreationForm):
    """Sign-up: a username and a password, twice."""

    class Meta(UserCreationForm.Meta):
        fields = ("username",)


class RoomForm(forms.ModelForm):
    """A new room: public (anyone may join) or private (its owner invites people)."""

    class Meta:
        model = Room
        fields = ("slug", "title", "is_public")
        help_texts = {"slug": "Lower-case letters, digits and dashes; it names the room in URLs.", "is_public": ""}
        labels = {"is_public": "Who can join"}
        widgets = {"is_public": forms.RadioSelect(choices=[
            (True, "Public: anyone logged in"), (False, "Private: people you invite"),
        ])}
