"""URL configuration: the core's endpoints, accounts, the admin, and the chat app."""

from django.contrib import admin
from django.urls import include, path

from realtime import views

urlpatterns = [
    path("echo/", views.echo_page, name="echo"),
    path("healthz", views.healthz, name="healthz"),
    path("api/ws-ticket/", views.ws_ticket, name="ws-ticket"),
    path("api/edges/", views.edges, name="edges"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("receipts.urls")),
    path("", include("attachments.urls")),
    path("", include("search.urls")),
    path("", include("chat.urls")),
]
