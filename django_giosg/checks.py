"""System checks; each id is stable and documented in the README. A retired id is never reused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings as django_settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.checks import CheckMessage, Error, Warning
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string

from .conf import KNOWN_KEYS, load
from .errors import GiosgConfigurationError
from .middleware import GiosgMiddleware

MIDDLEWARE_PATH = "django_giosg.middleware.GiosgMiddleware"
REQUEST_PROCESSOR = "django.template.context_processors.request"


def check_settings(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """E001: ``GIOSG`` is invalid. E006: ``VARIABLES`` cannot be imported or is not callable.
    W001: ``GIOSG`` has keys django-giosg does not know."""
    raw = getattr(django_settings, "GIOSG", {})
    messages: list[CheckMessage] = []
    try:
        loaded = load(raw)
    except GiosgConfigurationError as err:
        messages.append(
            Error(
                str(err),
                hint="See the settings section of django-giosg's README.",
                id="django_giosg.E001",
            )
        )
    else:
        try:
            loaded.variables_callable()
        except GiosgConfigurationError as err:
            messages.append(
                Error(
                    str(err),
                    hint="Give the dotted path of a callable that takes the user, or the "
                    "callable itself.",
                    id="django_giosg.E006",
                )
            )
    if isinstance(raw, dict):
        unknown = sorted(str(key) for key in raw if key not in KNOWN_KEYS)
        if unknown:
            messages.append(
                Warning(
                    f"GIOSG has unknown keys: {', '.join(unknown)}",
                    hint="Check the spelling; django-giosg ignores these keys.",
                    id="django_giosg.W001",
                )
            )
    return messages


def _position(middleware: Sequence[str], base: type) -> int | None:
    for index, path in enumerate(middleware):
        try:
            entry = import_string(path)
        except ImportError:
            continue  # Django itself reports middleware that cannot be imported
        if isinstance(entry, type) and issubclass(entry, base):
            return index
    return None


def check_middleware(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """E002: ``GiosgMiddleware`` is missing. E003: it is before the session or auth middleware."""
    middleware = list(django_settings.MIDDLEWARE)
    ours = _position(middleware, GiosgMiddleware)
    if ours is None:
        return [
            Error(
                f"{MIDDLEWARE_PATH} is not in MIDDLEWARE",
                hint="Add it after SessionMiddleware and AuthenticationMiddleware.",
                id="django_giosg.E002",
            )
        ]
    messages: list[CheckMessage] = []
    for base in (SessionMiddleware, AuthenticationMiddleware):
        position = _position(middleware, base)
        if position is None or position > ours:
            name = f"{base.__module__}.{base.__qualname__}"
            messages.append(
                Error(
                    f"{MIDDLEWARE_PATH} must come after {name} in MIDDLEWARE",
                    hint="It reads the session and the user.",
                    id="django_giosg.E003",
                )
            )
    return messages


DATABASE_SESSION_ENGINES = frozenset(
    {"django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cached_db"}
)


def check_sessions(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """E005: sessions are kept in the database, and ``django.contrib.sessions`` (its table) is
    not installed. The visitor id lives in the session."""
    engine = django_settings.SESSION_ENGINE
    if engine in DATABASE_SESSION_ENGINES and not apps.is_installed("django.contrib.sessions"):
        return [
            Error(
                f"SESSION_ENGINE is {engine!r} but django.contrib.sessions is not in "
                "INSTALLED_APPS",
                hint='Add "django.contrib.sessions" to INSTALLED_APPS, or choose another '
                "SESSION_ENGINE; django-giosg keeps the visitor id in the session.",
                id="django_giosg.E005",
            )
        ]
    return []


def check_urls(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """E004: the capture endpoint is not in the URLconf."""
    try:
        reverse("django_giosg:capture")
    except NoReverseMatch:
        return [
            Error(
                "django-giosg's capture endpoint (django_giosg:capture) is not in the URLconf",
                hint='Add path("giosg/", include("django_giosg.urls")) to your urlpatterns.',
                id="django_giosg.E004",
            )
        ]
    return []


def check_templates(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """W002: no Django template engine has the ``request`` context processor the tags need."""
    engines: list[dict[str, Any]] = django_settings.TEMPLATES
    for engine in engines:
        if engine.get("BACKEND") != "django.template.backends.django.DjangoTemplates":
            continue
        processors = engine.get("OPTIONS", {}).get("context_processors", [])
        if REQUEST_PROCESSOR in processors:
            return []
    return [
        Warning(
            "{% giosg_capture %} and {% giosg_logout %} need the request in the template "
            "context, and no DjangoTemplates engine has the request context processor",
            hint=f'Add "{REQUEST_PROCESSOR}" to OPTIONS["context_processors"] in TEMPLATES.',
            id="django_giosg.W002",
        )
    ]
