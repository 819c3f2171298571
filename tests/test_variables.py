"""django_giosg.variables: the default ``VARIABLES`` callable."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from django_giosg.variables import default_variables


def test_the_default_variables_name_the_user_by_full_name_or_username() -> None:
    user_model = get_user_model()
    named = user_model(pk=7, username="ann", first_name="Ann", last_name="Smith")
    assert default_variables(named) == {"username": "Ann Smith", "user_id": 7}
    blank = user_model(pk=8, username="bob", first_name=" ", last_name="")
    assert default_variables(blank) == {"username": "bob", "user_id": 8}
