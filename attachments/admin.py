"""Files in the admin: staff see who uploaded what where, and remove a file through the service."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest

from attachments import services
from attachments.models import Attachment


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ("name", "room", "uploader", "content_type", "size", "message", "created_at")
    list_filter = ("content_type", "created_at")
    search_fields = ("name", "uploader__username", "room__slug")
    readonly_fields = ("token", "room", "uploader", "message", "name", "size", "content_type", "file", "thumbnail",
                       "created_at")
    actions = ["remove_files"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # files arrive through uploads only

    def has_change_permission(self, request: HttpRequest, obj: Attachment | None = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Attachment) -> None:
        """The delete button: the service removes the row and the bytes and tells the room."""
        services.attachment_remove(attachment=obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for attachment in queryset:
            services.attachment_remove(attachment=attachment)

    @admin.action(description="Remove the selected files", permissions=["delete"])
    def remove_files(self, request: HttpRequest, queryset) -> None:
        count = 0
        for attachment in queryset:
            services.attachment_remove(attachment=attachment)
            count += 1
        self.message_user(request, f"Removed {count} file(s).", messages.SUCCESS)
