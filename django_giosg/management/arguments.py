"""Command-line argument types shared by django-giosg's management commands."""

from __future__ import annotations

import argparse
import math
import threading
from collections.abc import Callable


def whole_number(minimum: int) -> Callable[[str], int]:
    """An ``argparse`` type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a whole number of {minimum} or more, got {text!r}"
            )
        return value

    return parse


def positive_seconds(text: str) -> float:
    """An ``argparse`` type: a finite number of seconds greater than 0 (fractions allowed), no
    longer than a wait can be (``threading.TIMEOUT_MAX``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= threading.TIMEOUT_MAX:  # also false for nan and inf
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds greater than 0 and at most "
            f"{threading.TIMEOUT_MAX:.0f}, got {text!r}"
        )
    return value
