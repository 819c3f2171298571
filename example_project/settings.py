"""Settings of the example site, read from the environment with django-environ.

Without ``GIOSG_API_TOKEN`` the site runs offline against the giosg simulator bundled with
django-giosg (``scripts/demo`` starts it and sets ``GIOSG_SIMULATOR_URL``). With
``GIOSG_API_TOKEN``, ``GIOSG_ORGANIZATION_ID`` and ``GIOSG_ROOM_IDS`` it talks to the real giosg.
``.env.example`` documents every variable; a ``.env`` file beside this one is read when present.
"""

import logging
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")  # variables already set in the environment win

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="example-project-not-a-secret")
DEBUG = env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_giosg",
    "example_project",  # its templates, static files and the ``demo`` command
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_giosg.middleware.GiosgMiddleware",  # after the session and auth middleware
]

ROOT_URLCONF = "example_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",  # the giosg tags need it
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

# -- giosg --------------------------------------------------------------------------------------

#: The organization and rooms of the offline demo (any UUIDs: the simulator adopts them).
DEMO_ORGANIZATION_ID = "5e1a7c0d-0000-4000-8000-000000000001"
DEMO_ROOM_IDS = ["5e1a7c0d-0000-4000-8000-0000000000a1", "5e1a7c0d-0000-4000-8000-0000000000a2"]

GIOSG_API_TOKEN = env.str("GIOSG_API_TOKEN", default="")

if GIOSG_API_TOKEN:  # the real giosg
    GIOSG_SIMULATOR_URL = None
    GIOSG = {
        "API_TOKEN": GIOSG_API_TOKEN,
        "ORGANIZATION_ID": env.str("GIOSG_ORGANIZATION_ID"),
        "ROOM_IDS": env.list("GIOSG_ROOM_IDS"),
    }
else:  # offline: the simulator accepts whatever token the site sends, once it adopted it
    GIOSG_SIMULATOR_URL = env.str("GIOSG_SIMULATOR_URL", default="http://127.0.0.1:8765")
    GIOSG_SIMULATOR_URL = GIOSG_SIMULATOR_URL.rstrip("/")
    _organization = env.str("GIOSG_ORGANIZATION_ID", default=DEMO_ORGANIZATION_ID)
    GIOSG = {
        "API_TOKEN": "offline-demo-token",
        "ORGANIZATION_ID": _organization,
        "ROOM_IDS": env.list("GIOSG_ROOM_IDS", default=DEMO_ROOM_IDS),
        "API_BASE_URL": GIOSG_SIMULATOR_URL,
        # No visitor_id in the URL: each browser gets its own visitor from the loader stand-in.
        "LOADER_URL": f"{GIOSG_SIMULATOR_URL}/live2/{_organization}",
    }


def _not_a_panel_poll(record: logging.LogRecord) -> bool:
    """runserver's request log without the panel's poll, once a second per open page."""
    return "/giosg-state/" not in record.getMessage()


# What django-giosg does, on the console (never with the token or a variable's value), and
# runserver's request log.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "no_panel_polls": {"()": "django.utils.log.CallbackFilter", "callback": _not_a_panel_poll}
    },
    "formatters": {
        "server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        }
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "server": {
            "class": "logging.StreamHandler",
            "formatter": "server",
            "filters": ["no_panel_polls"],
        },
    },
    "loggers": {
        "django_giosg": {"handlers": ["console"], "level": env.str("GIOSG_LOG_LEVEL", "INFO")},
        "django.server": {"handlers": ["server"], "level": "INFO", "propagate": False},
    },
}
