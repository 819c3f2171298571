"""System checks: each under override_settings, and their registration through ``check``."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.checks import CheckMessage, Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_giosg import checks
from django_giosg.middleware import GiosgMiddleware

SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
CSRF = "django.middleware.csrf.CsrfViewMiddleware"
GIOSG = "django_giosg.middleware.GiosgMiddleware"


def ids(messages: Sequence[CheckMessage]) -> list[str | None]:
    return [message.id for message in messages]


def test_the_test_settings_pass_every_check() -> None:
    for check in (
        checks.check_settings,
        checks.check_middleware,
        checks.check_sessions,
        checks.check_urls,
        checks.check_templates,
    ):
        assert check(None) == []


# -- E001, W001: the GIOSG setting ---------------------------------------------------------


def test_e001_an_invalid_setting_names_the_key() -> None:
    with override_settings(GIOSG={**settings.GIOSG, "MAX_WORKERS": 0}):
        [error] = checks.check_settings(None)
    assert isinstance(error, Error)
    assert error.id == "django_giosg.E001"
    assert 'GIOSG["MAX_WORKERS"] must be greater than 0' in error.msg


def test_e001_a_missing_required_key() -> None:
    with override_settings(GIOSG={"ORGANIZATION_ID": settings.GIOSG["ORGANIZATION_ID"]}):
        assert ids(checks.check_settings(None)) == ["django_giosg.E001"]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ("tests.nowhere.variables", "cannot be imported"),
        ("tests.settings.ROOM_ID", "is not callable"),
    ],
)
def test_e006_variables_that_cannot_be_called(variables: str, message: str) -> None:
    with override_settings(GIOSG={**settings.GIOSG, "VARIABLES": variables}):
        [error] = checks.check_settings(None)
    assert error.id == "django_giosg.E006"
    assert f'GIOSG["VARIABLES"] = {variables!r} {message}' in error.msg


def test_e006_a_callable_passes() -> None:
    with override_settings(GIOSG={**settings.GIOSG, "VARIABLES": lambda user: {}}):
        assert checks.check_settings(None) == []


# -- E005: where the session lives --------------------------------------------------------


WITHOUT_SESSIONS = [app for app in settings.INSTALLED_APPS if app != "django.contrib.sessions"]


@pytest.mark.parametrize("engine", ["db", "cached_db"])
def test_e005_database_sessions_without_the_sessions_app(engine: str) -> None:
    with override_settings(
        INSTALLED_APPS=WITHOUT_SESSIONS,
        SESSION_ENGINE=f"django.contrib.sessions.backends.{engine}",
    ):
        [error] = checks.check_sessions(None)
    assert error.id == "django_giosg.E005"
    assert "django.contrib.sessions is not in INSTALLED_APPS" in error.msg


@pytest.mark.parametrize("engine", ["signed_cookies", "cache", "file"])
def test_e005_other_session_engines_need_no_app(engine: str) -> None:
    with override_settings(
        INSTALLED_APPS=WITHOUT_SESSIONS,
        SESSION_ENGINE=f"django.contrib.sessions.backends.{engine}",
    ):
        assert checks.check_sessions(None) == []


def test_w001_unknown_keys_are_named() -> None:
    with override_settings(GIOSG={**settings.GIOSG, "ROOMS": [], "TIMEOUTS": 3}):
        [warning] = checks.check_settings(None)
    assert isinstance(warning, Warning)
    assert warning.id == "django_giosg.W001"
    assert warning.msg == "GIOSG has unknown keys: ROOMS, TIMEOUTS"


def test_an_invalid_and_misspelt_setting_gets_both() -> None:
    with override_settings(GIOSG={**settings.GIOSG, "ENABLED": "yes", "ROOMS": []}):
        assert ids(checks.check_settings(None)) == ["django_giosg.E001", "django_giosg.W001"]


def test_a_setting_that_is_no_dict_is_one_error() -> None:
    with override_settings(GIOSG=["API_TOKEN"]):
        assert ids(checks.check_settings(None)) == ["django_giosg.E001"]


# -- E002, E003: the middleware ------------------------------------------------------------


def test_e002_the_middleware_is_missing() -> None:
    with override_settings(MIDDLEWARE=[SESSION, CSRF, AUTH]):
        [error] = checks.check_middleware(None)
    assert error.id == "django_giosg.E002"
    assert GIOSG in error.msg


@pytest.mark.parametrize(
    ("middleware", "missing"),
    [
        ([GIOSG, SESSION, CSRF, AUTH], [SESSION, AUTH]),
        ([SESSION, CSRF, GIOSG, AUTH], [AUTH]),
        ([SESSION, GIOSG], [AUTH]),
        ([AUTH, GIOSG], [SESSION]),
    ],
)
def test_e003_the_middleware_must_come_after_session_and_auth(
    middleware: list[str], missing: list[str]
) -> None:
    with override_settings(MIDDLEWARE=middleware):
        errors = checks.check_middleware(None)
    assert ids(errors) == ["django_giosg.E003"] * len(missing)
    for error, name in zip(errors, missing, strict=True):
        assert error.msg == f"{GIOSG} must come after {name} in MIDDLEWARE"


def test_subclasses_count_and_unimportable_entries_are_skipped() -> None:
    custom = [
        "tests.test_checks.CustomSession",
        "no.such.Middleware",
        AUTH,
        "tests.test_checks.CustomGiosg",
    ]
    with override_settings(MIDDLEWARE=custom):
        assert checks.check_middleware(None) == []


# -- E004: the URLs; W002: the request context processor ---------------------------------------


@override_settings(ROOT_URLCONF="tests.urls_without_giosg")
def test_e004_the_urls_are_not_included() -> None:
    [error] = checks.check_urls(None)
    assert error.id == "django_giosg.E004"
    assert 'include("django_giosg.urls")' in (error.hint or "")


def test_w002_no_engine_has_the_request_context_processor() -> None:
    jinja = {"BACKEND": "django.template.backends.jinja2.Jinja2", "OPTIONS": {}}
    django_without = {"BACKEND": "django.template.backends.django.DjangoTemplates"}
    django_other = {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "OPTIONS": {"context_processors": ["django.contrib.auth.context_processors.auth"]},
    }
    with override_settings(TEMPLATES=[jinja, django_without, django_other]):
        [warning] = checks.check_templates(None)
    assert warning.id == "django_giosg.W002"
    with override_settings(TEMPLATES=[jinja, *settings.TEMPLATES]):
        assert checks.check_templates(None) == []


# -- registration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"GIOSG": {"ENABLED": 1}}, "django_giosg.E001"),
        ({"MIDDLEWARE": [SESSION, AUTH]}, "django_giosg.E002"),
        ({"MIDDLEWARE": [SESSION, GIOSG, AUTH]}, "django_giosg.E003"),
        ({"ROOT_URLCONF": "tests.urls_without_giosg"}, "django_giosg.E004"),
    ],
)
@pytest.mark.django_db  # on Django 6.1, JSONField's check asks SQLite whether it has JSON
def test_manage_py_check_runs_them(changes: dict[str, object], expected: str) -> None:
    with override_settings(**changes), pytest.raises(SystemCheckError, match=expected):
        call_command("check")


@pytest.mark.django_db
def test_manage_py_check_shows_the_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    without_request = [
        {
            **settings.TEMPLATES[0],
            "OPTIONS": {
                "context_processors": [
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ]
    with override_settings(GIOSG={**settings.GIOSG, "ROOMS": []}, TEMPLATES=without_request):
        call_command("check")
    output = capsys.readouterr().err
    assert "django_giosg.W001" in output
    assert "django_giosg.W002" in output


class CustomSession(SessionMiddleware):
    """A project's own session middleware."""


class CustomGiosg(GiosgMiddleware):
    """A project's own GiosgMiddleware."""
