from django.contrib import admin

from receipts.models import ReadPosition


@admin.register(ReadPosition)
class ReadPositionAdmin(admin.ModelAdmin):
    list_display = ("user", "room", "seq", "updated_at")
    list_filter = ("room",)
    search_fields = ("user__username", "room__slug")
