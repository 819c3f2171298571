"""``giosg_ping``: is the token accepted, and which rooms does the organization have?"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...client import GiosgClient
from ...conf import get_settings
from ...errors import GiosgConfigurationError, GiosgError


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
                client.check_credentials()
                rooms = list(client.iter_rooms())
            except GiosgError as err:
                raise CommandError(f"{err} (GIOSG['API_BASE_URL'] = {client.base_url})") from None
        self.stdout.write(
            f"The token works for organization {settings.organization_id} at {client.base_url}."
        )
        configured = set(settings.room_ids)
        for room in rooms:
            owner = "shared" if room.is_shared else "owned"
            mark = " (in ROOM_IDS)" if room.id.lower() in configured else ""
            self.stdout.write(f"  {room.id}  {owner:6}  {room.name}{mark}")
        missing = configured - {room.id.lower() for room in rooms}
        for room_id in sorted(missing):
            self.stderr.write(f"ROOM_IDS names {room_id}, which is not in the room list.")
        self.stdout.write(f"{len(rooms)} room(s).")
