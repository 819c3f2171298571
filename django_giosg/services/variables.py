"""The ``VARIABLES`` contract: what the host's callable may return, and what giosg gets of it."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from django.views.decorators.debug import sensitive_variables

from ..conf import GiosgSettings
from ..errors import GiosgConfigurationError

logger = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@sensitive_variables("produced", "variables", "value")  # hidden from error reports without DEBUG
def user_variables(user: Any, settings: GiosgSettings) -> dict[str, str]:
    """The variables ``VARIABLES`` builds for ``user``: ``None`` values skipped, the others
    ``str()``-ed, invalid keys skipped with a warning. Empty means "don't attach".

    Raises :class:`~django_giosg.errors.GiosgConfigurationError` when the callable cannot be
    imported or does not return a mapping.
    """
    produced = settings.variables_callable()(user)
    if produced is None:
        return {}
    if not isinstance(produced, Mapping):
        raise GiosgConfigurationError(
            f'GIOSG["VARIABLES"] must return a mapping or None, not {type(produced).__name__}'
        )
    variables: dict[str, str] = {}
    for key, value in produced.items():
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            shown = repr(key)[:70] if isinstance(key, str) else type(key).__name__
            logger.warning(
                'GIOSG["VARIABLES"] returned the key %s, which giosg would not take '
                "(allowed: %s); it is skipped",
                shown,
                KEY_PATTERN.pattern,
            )
            continue
        if value is not None:
            variables[key] = str(value)
    return variables


def merge_keys(*records: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """``{room: [keys]}`` records merged: each key once, in first-seen order, empty rooms
    left out."""
    merged: dict[str, list[str]] = {}
    for record in records:
        for room, keys in record.items():
            merged[room] = list(dict.fromkeys([*merged.get(room, []), *keys]))
    return {room: keys for room, keys in merged.items() if keys}
