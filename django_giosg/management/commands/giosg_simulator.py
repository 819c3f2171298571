"""``manage.py giosg_simulator``: serve the giosg simulator until Ctrl-C or SIGTERM (exit 0).

The simulator takes the organization, token and rooms of ``settings.GIOSG`` when they are set, so
that a site pointed at it (``API_BASE_URL``) works unchanged; whatever token the site has is the
one it accepts (its control API does not tell the token: the site's settings do). The system
checks don't run: an incomplete ``GIOSG`` must not stop it.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_giosg.testing import DEFAULT_API_TOKEN, DEFAULT_ORGANIZATION_ID, GiosgSimulator

from ..arguments import whole_number


class Command(BaseCommand):
    help = "Serve a stateful giosg simulator on 127.0.0.1 (for development and tests)."
    # It needs no valid GIOSG (it serves any token): E001 must not stop it before the site is
    # configured for it.
    requires_system_checks: list[str] = []  # noqa: RUF012 (Django's own idiom)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=whole_number(0), default=8765, help="0 picks a free port"
        )
        parser.add_argument("--seed", type=int, default=0, help="makes rate-based faults repeat")
        parser.add_argument("--page-size", type=whole_number(1), default=50)
        parser.add_argument(
            "--rooms",
            type=whole_number(1),
            default=3,
            help="own rooms, when GIOSG has no ROOM_IDS",
        )
        parser.add_argument("--shared-rooms", type=whole_number(0), default=1)

    def handle(self, *args: Any, **options: Any) -> None:
        configured: dict[str, Any] = dict(getattr(settings, "GIOSG", {}))
        room_ids = configured.get("ROOM_IDS")
        simulator = GiosgSimulator(
            port=options["port"],
            api_token=configured.get("API_TOKEN") or DEFAULT_API_TOKEN,
            organization_id=configured.get("ORGANIZATION_ID") or DEFAULT_ORGANIZATION_ID,
            room_ids=list(room_ids) if room_ids else None,
            rooms=options["rooms"],
            shared_rooms=options["shared_rooms"],
            page_size=options["page_size"],
            seed=options["seed"],
        )
        previous = None
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (docker stop, systemd, CI, scripts/demo) stops it as cleanly as Ctrl-C does;
            # handled before it listens, so that no SIGTERM finds the default action (death).
            previous = signal.signal(signal.SIGTERM, lambda *_: simulator.request_shutdown())
        try:
            self._serve(simulator, options["port"], configured.get("API_BASE_URL"))
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        self.stdout.write("giosg simulator stopped.")

    def _serve(self, simulator: GiosgSimulator, port: int, configured_url: str | None) -> None:
        try:
            simulator.start()
        except OSError as err:
            raise CommandError(f"cannot listen on port {port}: {err.strerror}") from None
        try:
            self._banner(simulator, configured_url)
            simulator.wait()
        except KeyboardInterrupt:
            pass
        finally:
            simulator.stop()

    def _banner(self, simulator: GiosgSimulator, configured_url: str | None) -> None:
        base = simulator.base_url
        self.stdout.write(f"giosg simulator listening on {base}")
        self.stdout.write(f"  organization {simulator.organization_id}")
        self.stdout.write(f"  own rooms    {', '.join(simulator.room_ids)}")
        self.stdout.write(f"  shared rooms {', '.join(simulator.shared_room_ids) or '-'}")
        self.stdout.write(f"  loader       {simulator.loader_url}")
        self.stdout.write(f"  control API  {base}/_simulator/")
        if configured_url != base:
            self.stdout.write(f'Point the site at it with GIOSG["API_BASE_URL"] = "{base}".')
        self.stdout.write("Quit with CONTROL-C.")
        self.stdout.flush()
