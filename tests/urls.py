"""URLs of the test site: django-giosg's endpoint, Django's auth views and a page with the tags."""

import secrets

from django.contrib import admin
from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseServerError, JsonResponse
from django.shortcuts import redirect, render
from django.urls import include, path
from django.views.decorators.cache import cache_page


def page(request: HttpRequest) -> HttpResponse:
    return render(request, "page.html")


def cleanup_only_page(request: HttpRequest) -> HttpResponse:
    """A page with the logout tag only: it reads no session, so nothing else makes it vary."""
    return render(request, "cleanup_only.html")


def strict_csp_page(request: HttpRequest) -> HttpResponse:
    """The page under a policy that runs only scripts with the nonce, which django-csp's
    middleware would have put on ``request.csp_nonce``."""
    nonce = secrets.token_urlsafe(16)
    request.csp_nonce = nonce  # type: ignore[attr-defined]
    response = render(request, "page.html")
    response["Content-Security-Policy"] = f"script-src 'nonce-{nonce}'"
    return response


def data(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


def whoami(request: HttpRequest) -> HttpResponse:
    user = request.user
    return JsonResponse({"user": user.get_username() if user.is_authenticated else None})


def set_expiry(request: HttpRequest, seconds: int) -> HttpResponse:
    request.session.set_expiry(seconds)
    return JsonResponse({"expiry": seconds})


def cycle_key(request: HttpRequest) -> HttpResponse:
    request.session.cycle_key()
    return JsonResponse({"cycled": True})


def go(request: HttpRequest) -> HttpResponse:
    """Renders the page (the logout tag included) but sends a redirect."""
    render(request, "page.html")
    return redirect("/")


def switch_to(request: HttpRequest, username: str) -> HttpResponse:
    """Log out, then log in as ``username``, in one request (as a staff "log in as" does)."""
    logout(request)
    login(request, get_user_model().objects.get(username=username))
    return redirect("/")


def logout_then_fail(request: HttpRequest) -> HttpResponse:
    """A logout whose view then fails (with ``ATOMIC_REQUESTS`` it would be rolled back)."""
    logout(request)
    return HttpResponseServerError("the view failed")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("giosg/", include("django_giosg.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="/"), name="logout"),
    path(
        "accounts/password-change/",
        auth_views.PasswordChangeView.as_view(success_url="/whoami/"),
    ),
    path("accounts/logged-out/", auth_views.LogoutView.as_view(template_name="page.html")),
    path("csp/", strict_csp_page),
    path("data/", data),
    path("go/", go),
    path("whoami/", whoami),
    path("set-expiry/<int:seconds>/", set_expiry),
    path("cycle-key/", cycle_key),
    path("switch-to/<str:username>/", switch_to),
    path("logout-then-fail/", logout_then_fail),
    path("cached/", cache_page(600)(page)),
    path("cached-cleanup/", cache_page(600)(cleanup_only_page)),
    path("cleanup-only/", cleanup_only_page),
    path("", page, name="page"),
]
