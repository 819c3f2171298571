"""Version-dependent imports, chosen in one place.

Django 6.0 ships ``django.tasks``; below it the ``django_tasks`` backport provides the same API.
Environment markers cannot test Django's version, so the backport is always installed and the
import is chosen here by ``django.VERSION``. Type checkers see the backport, whose API is the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import django

if TYPE_CHECKING or django.VERSION < (6, 0):  # pragma: no branch
    from django_tasks import task  # pragma: no cover - Django 5.2 environments
else:
    from django.tasks import task  # pragma: no cover - Django 6.x environments

__all__ = ["task"]
