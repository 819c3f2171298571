"""The test settings with django-giosg's tables on a second database ("accounts"), routed by
:class:`tests.routers.AccountsRouter`: every transaction, ``on_commit`` and feature check of the
app must follow the router. ``tox -e two-databases`` runs the suite with them, and
``tests/test_two_databases.py`` only runs there."""

import os
import tempfile

from .settings import *  # noqa: F403
from .settings import DATABASES

DATABASES = {
    **DATABASES,
    "accounts": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
        "TEST": {
            "NAME": os.path.join(
                tempfile.gettempdir(), f"django-giosg-tests-accounts-{os.getpid()}.sqlite3"
            )
        },
    },
}
DATABASE_ROUTERS = ["tests.routers.AccountsRouter"]
