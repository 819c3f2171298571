"""django_giosg._compat: the tasks framework of this Django (``django.tasks`` from 6.0, else the
``django-tasks`` backport)."""

from __future__ import annotations

import django

from django_giosg import _compat


def test_compat_picks_the_task_decorator_for_this_django() -> None:
    expected = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
    assert _compat.task.__module__.startswith(expected)
