"""``giosg_sweep``: detach expired sessions' links, retry due links, prune old detached links.

Run it from cron every few minutes; it does the HTTP work itself, so no task worker is needed.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import tasks
from ...errors import GiosgConfigurationError
from ..arguments import whole_number


class Command(BaseCommand):
    help = (
        "Detach the links of expired sessions, retry links whose time has come and prune "
        "old detached links. Prints one summary line; exits 0 even while giosg is down."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be done; change nothing and call nobody.",
        )
        parser.add_argument(
            "--limit",
            type=whole_number(1),
            metavar="N",
            help="Work at most N links in this run; the others wait for the next run.",
        )

    def handle(self, *args: Any, dry_run: bool, limit: int | None, **options: Any) -> None:
        try:
            report = tasks.run_sweep(limit=limit, dry_run=dry_run)
        except GiosgConfigurationError as err:
            raise CommandError(str(err)) from None
        if report is None:
            self.stdout.write("giosg_sweep: GIOSG is disabled (ENABLED = False); nothing done.")
            return
        self.stdout.write(report.line())
