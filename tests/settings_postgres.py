"""The test suite's settings on PostgreSQL (``tox -e postgres``).

The tests start their own server (see :mod:`tests.servers`) before the test database is made and
fill in its address; until then ``HOST`` and ``PORT`` are empty.
"""

from .settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "django_giosg",
        "USER": "postgres",
        "HOST": "",
        "PORT": "",
    }
}
