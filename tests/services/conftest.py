"""What the services' tests share: settings with two rooms, a user, a link of the visitor."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser

from django_giosg import conf
from django_giosg.models import VisitorLink

from ..conftest import ORG_URL, ROOM, VISITOR, load_settings

ROOM_2 = "0f3ba9f2-56e1-11e5-9c5e-6c4008c08dfe"
SHARED = "11111111-56e1-11e5-9c5e-6c4008c08dfe"
VARIABLES_URL = re.compile(rf"{ORG_URL}/rooms/[^/]+/visitors/{VISITOR}/variables$")


def two_rooms(**changes: object) -> conf.GiosgSettings:
    """Validated settings with ``ROOM_IDS`` of two rooms, and ``changes``."""
    return load_settings(**{"ROOM_IDS": [ROOM, ROOM_2], **changes})


@pytest.fixture
def user() -> AbstractUser:
    ann: AbstractUser = get_user_model().objects.create_user(
        "ann", first_name="Ann", last_name="Smith"
    )
    return ann


def link_for(user: AbstractUser | None, **fields: Any) -> VisitorLink:
    """A link of the test visitor to ``user``."""
    link: VisitorLink = VisitorLink.objects.create(visitor_id=VISITOR, user=user, **fields)
    return link
