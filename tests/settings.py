"""Django settings for django-giosg's own test suite."""

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "django-giosg-tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_giosg",
    "django_tasks_db",  # the database task backend's table, for the worker tests
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_GIOSG_TEST_DB", ":memory:"),  # subprocess tests set it
        # A file, so that threads (concurrent logins) and processes share the test database,
        # one per process so that parallel runs never meet.
        "TEST": {
            "NAME": os.path.join(
                tempfile.gettempdir(), f"django-giosg-tests-{os.getpid()}.sqlite3"
            )
        },
    }
}

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_giosg.middleware.GiosgMiddleware",
]

ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast tests

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

ORGANIZATION_ID = "7f9e9580-095b-42c7-838c-c04e667b26f7"
ROOM_ID = "9926bdfa-56e0-11e5-b98c-6c4008c08dfe"

GIOSG = {
    "API_TOKEN": "test-token-not-secret",
    "ORGANIZATION_ID": ORGANIZATION_ID,
    "ROOM_IDS": [ROOM_ID],
    # a subprocess test points it elsewhere
    "API_BASE_URL": os.environ.get("DJANGO_GIOSG_TEST_API_BASE_URL", "https://giosg.test"),
}
LOGIN_REDIRECT_URL = "/"
