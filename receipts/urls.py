from django.urls import path

from receipts import views

urlpatterns = [path("api/receipts/", views.unread, name="receipts-unread")]
