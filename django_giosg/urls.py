"""The capture endpoint's URL: ``path("giosg/", include("django_giosg.urls"))`` in the URLconf."""

from django.urls import path

from . import views

app_name = "django_giosg"

urlpatterns = [
    path("visitor/", views.capture, name="capture"),
]
