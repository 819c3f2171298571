"""The database router of ``tests.settings_two_databases``: django-giosg's tables (and the users
they point at) on a second database, as in Django's ``AuthRouter`` example."""

from __future__ import annotations

from typing import Any

from django.db import models

#: The apps on "accounts": django-giosg, and what its links and the admin's log point at.
ACCOUNTS_APPS = {"django_giosg", "auth", "contenttypes", "admin"}


def _database(app_label: str) -> str:
    return "accounts" if app_label in ACCOUNTS_APPS else "default"


class AccountsRouter:
    """Writes go where the app lives. Reads of django-giosg's rows go to "default", which has no
    such table, unless they follow an instance: like a replica that never catches up, it fails
    every read the app does not pin to the database it writes to."""

    def db_for_read(self, model: type[models.Model], **hints: Any) -> str | None:
        if model._meta.app_label == "django_giosg":
            return None if "instance" in hints else "default"
        return _database(model._meta.app_label)

    def db_for_write(self, model: type[models.Model], **hints: Any) -> str:
        return _database(model._meta.app_label)

    def allow_relation(self, obj1: models.Model, obj2: models.Model, **hints: Any) -> bool:
        # (obj._meta, not type(obj)._meta: request.user is a lazy object)
        return _database(obj1._meta.app_label) == _database(obj2._meta.app_label)

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        return db == _database(app_label)


class LaggingReplicaRouter(AccountsRouter):
    """As :class:`AccountsRouter`, but every read of django-giosg's rows goes to "default", hints
    or not: a replica that never caught up (it has not even the tables). Only reads the app pins to
    the database it writes to work."""

    def db_for_read(self, model: type[models.Model], **hints: Any) -> str | None:
        if model._meta.app_label == "django_giosg":
            return "default"
        return _database(model._meta.app_label)


class ByModelRouter(AccountsRouter):
    """As :class:`AccountsRouter`, but with no opinion on a migration that names no model (a
    common style): a ``RunPython`` must name its model in its hints, or it runs everywhere."""

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if model_name is None:
            return None
        return super().allow_migrate(db, app_label, model_name, **hints)
