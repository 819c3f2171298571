"""One live link per visitor on every database: a unique column set only while the link is live.

The conditional unique constraint of 0001 is ignored by MySQL, MariaDB and Oracle (``models.W036``),
so there a visitor may have more than one live link already. As a later login would have done, the
newest is bound anew (``pending_attach``) and the others are released (``pending_detach``), all due
at once: ``giosg_sweep`` detaches the old ones first (they have the same keys), then sets the
newest's variables again (this ends the visitor's open chats, as a login of another user would).
The column is filled before it becomes unique, a check keeps it in step with the state from then
on, and the old constraint goes last.

Stop every process that runs django-giosg (web and task workers) while this runs: the old code
writes states without the column, which the check refuses, and MySQL, MariaDB and Oracle cannot
roll back a half-done migration.
"""

from typing import Any

from django.db import migrations, models
from django.db.models import Count, F, Max
from django.utils import timezone

LIVE_STATES = ["pending_attach", "attached"]


def fill_live_visitor_ids(apps: Any, schema_editor: Any) -> None:
    links = apps.get_model("django_giosg", "VisitorLink").objects.using(
        schema_editor.connection.alias
    )
    live = links.filter(state__in=LIVE_STATES)
    now = timezone.now()
    doubled = live.values("visitor_id").annotate(count=Count("pk"), newest=Max("pk"))
    fresh_start = {"attempts": 0, "failed_action": "", "next_attempt_at": now, "updated_at": now}
    for visitor in doubled.filter(count__gt=1):
        of_visitor = live.filter(visitor_id=visitor["visitor_id"])
        of_visitor.exclude(pk=visitor["newest"]).update(state="pending_detach", **fresh_start)
        of_visitor.filter(pk=visitor["newest"]).update(
            state="pending_attach", live_visitor_id=F("visitor_id"), **fresh_start
        )
    # Each row is updated once: on PostgreSQL a second update of a row in this transaction queues
    # its deferred foreign key check, and the ALTER TABLE below fails ("pending trigger events").
    live.filter(live_visitor_id__isnull=True).update(live_visitor_id=F("visitor_id"))


class Migration(migrations.Migration):
    dependencies = [
        ("django_giosg", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="visitorlink",
            name="live_visitor_id",
            field=models.CharField(blank=True, editable=False, max_length=128, null=True),
        ),
        migrations.RunPython(
            fill_live_visitor_ids,
            migrations.RunPython.noop,
            # for routers that decide by model: allow_migrate() gets model_name
            hints={"model_name": "visitorlink"},
            elidable=True,
        ),
        migrations.AddConstraint(
            model_name="visitorlink",
            constraint=models.UniqueConstraint(
                fields=("live_visitor_id",), name="django_giosg_one_live_link_per_visitor_id"
            ),
        ),
        migrations.AddConstraint(
            model_name="visitorlink",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("live_visitor_id", models.F("visitor_id")),
                        ("live_visitor_id__isnull", False),
                        ("state__in", ("pending_attach", "attached")),
                    ),
                    models.Q(
                        models.Q(("state__in", ("pending_attach", "attached")), _negated=True),
                        ("live_visitor_id__isnull", True),
                    ),
                    _connector="OR",
                ),
                name="django_giosg_live_visitor_id_follows_state",
            ),
        ),
        migrations.RemoveConstraint(
            model_name="visitorlink",
            name="django_giosg_one_live_link_per_visitor",
        ),
    ]
