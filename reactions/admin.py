from django.contrib import admin

from reactions.models import Reaction


@admin.register(Reaction)
class ReactionAdmin(admin.ModelAdmin):
    list_display = ("emoji", "message", "user", "created_at")
    search_fields = ("user__username", "emoji")
    list_select_related = ("message__room", "user")
    raw_id_fields = ("message", "user")
