from django.urls import path

from attachments import views

app_name = "attachments"

urlpatterns = [
    path("api/rooms/<str:slug>/uploads/", views.upload, name="upload"),
    path("files/<str:token>/", views.file, name="file"),
    path("files/<str:token>/thumbnail/", views.thumbnail, name="thumbnail"),
]
