"""``giosg_ping``: is the token accepted, and which rooms does the organization have?"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...client import GiosgClient
from ...conf import GiosgSettings, get_settings
from ...errors import GiosgAuthError, GiosgConfigurationError, GiosgError

WHERE_TO_CREATE_ONE = "Access tokens are under Console → Settings → Company → Access tokens."


class Command(BaseCommand):
    help = "Check GIOSG's API token against giosg and list the organization's rooms."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            settings = get_settings()
            # Its own client: one try per call, so that a broken token or network says so at once.
            client = GiosgClient.from_settings(settings, max_retries=0)
        except GiosgConfigurationError as err:
            raise CommandError(str(err)) from None
        with client:
            try:
                me = client.check_credentials()
            except GiosgError as err:
                raise CommandError(_refused_token(err, client.base_url)) from None
            try:
                rooms = list(client.iter_rooms())
            except GiosgError as err:
                raise CommandError(_refused_rooms(err, settings, me)) from None
        self.stdout.write(
            f"The token works for organization {settings.organization_id} at {client.base_url}."
        )
        configured = set(settings.room_ids)
        for room in rooms:
            # The workflows' rule: a room listed with another owner is not ours either.
            owner = "owned" if room.is_owned_by(settings.organization_id) else "shared"
            mark = " (in ROOM_IDS)" if room.id.lower() in configured else ""
            self.stdout.write(f"  {room.id}  {owner:6}  {room.name}{mark}")
        self.stdout.write(f"{len(rooms)} room(s).")
        missing = sorted(configured - {room.id.lower() for room in rooms})
        if missing:
            raise CommandError(
                f"GIOSG['ROOM_IDS'] names {len(missing)} room(s) giosg does not list for this "
                f"organization: {', '.join(missing)}. A deleted room, or another organization's?"
            )


def _refused_token(err: GiosgError, base_url: str) -> str:
    if isinstance(err, GiosgAuthError):
        return (
            f"giosg refused GIOSG['API_TOKEN'] ({err}). Likely: the token is mistyped or was "
            "revoked, or its user was deleted (a token dies with its user). " + WHERE_TO_CREATE_ONE
        )
    return f"{err} (GIOSG['API_BASE_URL'] = {base_url})"


def _refused_rooms(err: GiosgError, settings: GiosgSettings, me: dict[str, Any]) -> str:
    if not isinstance(err, GiosgAuthError):
        return f"{err} (GIOSG['API_BASE_URL'] = {settings.api_base_url})"
    own = str(me.get("organization_id") or "").lower()
    if own and own != settings.organization_id:
        return (
            f"giosg refused the room list ({err}): the token belongs to organization {own}, "
            f"but GIOSG['ORGANIZATION_ID'] is {settings.organization_id}."
        )
    return (
        f"giosg accepted GIOSG['API_TOKEN'] but refused the room list of "
        f"GIOSG['ORGANIZATION_ID'] = {settings.organization_id} ({err}). Likely: the token's "
        "user lacks the settings permission (needed for visitor variables), the organization "
        "is not the token's, or the subscription has lapsed."
    )
