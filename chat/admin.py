"""Moderation in the Django admin: rooms, memberships, messages, and who is online now.

Every action and every save or delete of a membership, a message or a banned word (the
change and add forms included) goes through chat.services, so it takes effect live in
open browsers, and is recorded in the admin log (``LogEntry``). The admin itself is
staff-only.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone

from chat import moderation, selectors, services
from chat.models import Announcement, BannedWord, Membership, Message, Room
from realtime.presence import presence_snapshot
from realtime.protocol import SLUG_RE


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("slug", "title", "is_public", "last_seq", "created_by", "created_at")
    list_filter = ("is_public", "created_at")
    search_fields = ("slug", "title")
    readonly_fields = ("last_seq",)
    change_list_template = "admin/chat/room/change_list.html"

    def get_urls(self):
        urls = super().get_urls()
        return [
            path("online/", self.admin_site.admin_view(self.online_view), name="chat_room_online"),
            path("online/kick/", self.admin_site.admin_view(self.kick_view), name="chat_room_kick"),
        ] + urls

    def online_view(self, request: HttpRequest) -> HttpResponse:
        """Who is connected to which room right now, from presence (every process).

        Superusers see every room; other staff only the rooms they may enter.
        """
        try:
            snapshot = presence_snapshot()
            error = None
        except Exception:
            snapshot, error = {}, "Presence is unavailable (is Redis running?)."
        if not request.user.is_superuser:
            # Staff see the rooms room_access lets them enter: no DM or private room of others.
            visible = set(selectors.rooms_visible(user=request.user).filter(slug__in=list(snapshot))
                          .values_list("slug", flat=True))
            snapshot = {room: names for room, names in snapshot.items() if room in visible}
        users = {u.username: u for u in get_user_model().objects.filter(
            username__in={n for names in snapshot.values() for n in names})}
        rows = [(room, [(name, users.get(name)) for name in names]) for room, names in snapshot.items()]
        context = {
            **self.admin_site.each_context(request),
            "title": "Online now",
            "rows": rows,
            "error": error,
            "opts": self.model._meta,
        }
        return render(request, "admin/chat/room/online.html", context)

    def kick_view(self, request: HttpRequest) -> HttpResponse:
        """Take a user's sockets out of a room now (POST; logged)."""
        if request.method != "POST" or not self.has_change_permission(request):
            return HttpResponse(status=405 if request.method != "POST" else 403)
        slug = request.POST.get("room", "")
        user = get_user_model().objects.filter(username=request.POST.get("user", "")).first()
        room = Room.objects.filter(slug=slug).first() if SLUG_RE.fullmatch(slug) else None
        if user is None or room is None:
            messages.error(request, "No such user or room.")
        else:
            services.member_kick(room_slug=room.slug, user_id=user.pk)
            LogEntry.objects.log_actions(
                user_id=request.user.pk,
                queryset=[room],
                action_flag=CHANGE,
                change_message=f"Kicked {user.get_username()} from the room.",
                single_object=True,
            )
            messages.success(request, f"{user.get_username()} was removed from {room.slug}.")
        return HttpResponseRedirect(reverse("admin:chat_room_online"))


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "room", "role", "muted_until", "banned", "joined_at")
    list_filter = ("role", "banned", "room")
    search_fields = ("user__username", "room__slug")
    autocomplete_fields = ("user", "room")
    actions = ("mute_10_minutes", "mute_1_day", "unmute", "ban", "unban")

    def get_readonly_fields(self, request, obj=None):
        # Who and where is the membership itself; to move it, delete it and add another.
        return ("user", "room", "joined_at") if obj is not None else ("joined_at",)

    def save_model(self, request, obj: Membership, form, change) -> None:
        """The change and add forms, through the services: a ban, mute or role applies live."""
        if change:
            services.membership_update(membership=obj, role=obj.role, muted_until=obj.muted_until, banned=obj.banned)
            return
        created = services.membership_add(
            room=obj.room, user=obj.user, role=obj.role, muted_until=obj.muted_until, banned=obj.banned
        )
        obj.pk = created.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj: Membership) -> None:
        """The delete page: the user's sockets leave the room."""
        services.membership_delete(membership=obj)

    def delete_queryset(self, request, queryset) -> None:
        """The "Delete selected" action: one service call per membership, so each user's sockets leave."""
        for membership in queryset.select_related("room"):
            services.membership_delete(membership=membership)

    def _each(self, request, queryset, service, verb: str, **kwargs) -> None:
        count = 0
        for membership in queryset.select_related("user", "room"):
            service(membership=membership, **kwargs)
            self.log_change(request, membership, f"{verb}.")
            count += 1
        self.message_user(request, f"{verb}: {count} membership(s).", messages.SUCCESS)

    @admin.action(description="Mute for 10 minutes", permissions=["change"])
    def mute_10_minutes(self, request, queryset):
        self._each(request, queryset, services.member_mute, "Muted for 10 minutes",
                   until=timezone.now() + timedelta(minutes=10))

    @admin.action(description="Mute for 1 day", permissions=["change"])
    def mute_1_day(self, request, queryset):
        self._each(request, queryset, services.member_mute, "Muted for 1 day", until=timezone.now() + timedelta(days=1))

    @admin.action(description="Unmute", permissions=["change"])
    def unmute(self, request, queryset):
        self._each(request, queryset, services.member_mute, "Unmuted", until=None)

    @admin.action(description="Ban from the room (leaves at once)", permissions=["change"])
    def ban(self, request, queryset):
        self._each(request, queryset, services.member_ban, "Banned")

    @admin.action(description="Unban", permissions=["change"])
    def unban(self, request, queryset):
        self._each(request, queryset, services.member_unban, "Unbanned")


class MessageForm(forms.ModelForm):
    """The message change form: a body with a *hide* word is refused here, as in the chat."""

    class Meta:
        model = Message
        fields = ("body",)

    def clean_body(self) -> str:
        body = self.cleaned_data["body"]
        if moderation.word_filter().blocks(body):
            raise ValidationError("The text contains a banned word whose action is to hide the message.")
        return body


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    form = MessageForm
    list_display = ("room", "seq", "author", "short_body", "created_at", "edited_at", "deleted_at")
    list_filter = ("room", ("deleted_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("body", "author__username", "room__slug")
    readonly_fields = ("room", "author", "seq", "client_id", "created_at", "edited_at", "deleted_at")
    list_select_related = ("room", "author")
    actions = ("remove_messages",)

    @admin.display(description="body")
    def short_body(self, obj: Message) -> str:
        return obj.body if len(obj.body) <= 80 else obj.body[:77] + "…"

    def has_add_permission(self, request) -> bool:
        # Messages are posted through the chat, which assigns seq and broadcasts.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Hard deletes would leave holes in seq; "Delete live" tombstones instead.
        return False

    def save_model(self, request, obj: Message, form, change) -> None:
        """A staff edit of the body reaches the room as ``message.updated`` (filtered like any edit)."""
        services.message_edit_by_staff(message=obj, body=form.cleaned_data["body"])

    @admin.action(description="Delete (disappears from open browsers)", permissions=["change"])
    def remove_messages(self, request, queryset):
        count = 0
        for message in queryset.select_related("room", "author"):
            if not message.is_deleted:
                services.message_remove(message=message)
                self.log_change(request, message, "Deleted live.")
                count += 1
        self.message_user(request, f"Deleted {count} message(s).", messages.SUCCESS)


@admin.register(Announcement)
class AnnouncementAdmin(admin.ModelAdmin):
    """Staff write an announcement; Celery delivers it now or at ``send_at``; the list shows the outcome."""

    list_display = ("short_body", "audience", "send_at", "status", "sent_at", "sockets", "created_by")
    list_filter = (("sent_at", admin.EmptyFieldListFilter), "room")
    search_fields = ("body",)
    fields = ("body", "room", "send_at", "status", "queued_at", "sent_at", "sockets", "created_by")
    readonly_fields = ("status", "queued_at", "sent_at", "sockets", "created_by")

    @admin.display(description="announcement")
    def short_body(self, obj: Announcement) -> str:
        return str(obj)

    @admin.display(description="to")
    def audience(self, obj: Announcement) -> str:
        return obj.room.slug if obj.room else "everyone"

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.sent_at is not None:
            return ("body", "room", "send_at", *self.readonly_fields)  # history is not rewritten
        return self.readonly_fields

    def save_model(self, request, obj: Announcement, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)  # a due edit is picked up by beat
            return
        created = services.announcement_create(
            body=obj.body, room=obj.room, send_at=obj.send_at, created_by=request.user
        )
        obj.pk = created.pk
        obj.refresh_from_db()


@admin.register(BannedWord)
class BannedWordAdmin(admin.ModelAdmin):
    """The moderation filter's words: applied to every message before it is stored or sent.

    Saved through chat.services, so this process applies a change to the next message
    and every other process within ``MODERATION_CACHE_SECONDS``.
    """

    list_display = ("word", "action")
    list_filter = ("action",)
    search_fields = ("word",)

    def save_model(self, request, obj: BannedWord, form, change) -> None:
        """Through the services, which bump the list's version for every process."""
        if change:
            services.banned_word_update(banned_word=obj, word=obj.word, action=obj.action)
            return
        created = services.banned_word_add(word=obj.word, action=obj.action)
        obj.pk, obj.word = created.pk, created.word

    def delete_model(self, request, obj: BannedWord) -> None:
        """The delete page, through the service."""
        services.banned_word_delete(banned_word=obj)

    def delete_queryset(self, request, queryset) -> None:
        """The "Delete selected" action: one service call per word."""
        for banned_word in queryset:
            services.banned_word_delete(banned_word=banned_word)
