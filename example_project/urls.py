"""The example site's URLs: the home page, Django's login and logout, django-giosg, the admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(extra_context={"offline": views.simulator_url()}),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),  # POST only
    path("giosg/", include("django_giosg.urls")),  # the capture endpoint
    path("giosg-state/", views.giosg_state, name="giosg_state"),
    path("admin/", admin.site.urls),
]
