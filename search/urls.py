from django.urls import path

from search import views

app_name = "search"

urlpatterns = [
    path("api/search/", views.search, name="search"),
]
