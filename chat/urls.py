from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("accounts/signup/", views.signup, name="signup"),
    path("rooms/new/", views.room_new, name="room-new"),
    path("api/rooms/", views.rooms_list, name="rooms"),
    path("api/rooms/<str:slug>/messages/", views.room_messages, name="room-messages"),
    path("api/avatar/", views.avatar_upload, name="avatar-upload"),
    path("api/avatars/<int:user_id>/", views.avatar_image, name="avatar"),
    path("api/rooms/<str:slug>/members/", views.room_members, name="room-members"),
    path("api/rooms/<str:slug>/members/<str:username>/", views.room_member, name="room-member"),
    path("api/rooms/<str:slug>/mute/", views.room_mute, name="room-mute"),
    path("api/dm/", views.dm_open, name="dm-open"),
    path("api/people/", views.people, name="people"),
]
