"""Unread counts over HTTP, for the room list of a page that just loaded."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET

from receipts.selectors import unread_by_room


@login_required
@require_GET
def unread(request: HttpRequest) -> JsonResponse:
    """``{"rooms": {slug: {"last_seq", "read_seq", "unread"}}}`` for the rooms the user can see."""
    response = JsonResponse({"rooms": unread_by_room(user=request.user)})
    patch_cache_control(response, private=True, no_cache=True)
    return response
