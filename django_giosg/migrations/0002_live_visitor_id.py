"""One live link per visitor on every database: a unique column set only while the link is live.

The conditional unique constraint of 0001 is ignored by MySQL, MariaDB and Oracle (``models.W036``),
so there a visitor may have more than one live link already: the newest stays live and the others
become ``pending_detach``, due at once, for ``giosg_sweep`` to detach (as a later login would have
done). The column is filled before it becomes unique, and the constraint goes last.
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
    for visitor in doubled.filter(count__gt=1):
        live.filter(visitor_id=visitor["visitor_id"]).exclude(pk=visitor["newest"]).update(
            state="pending_detach",
            attempts=0,
            failed_action="",
            next_attempt_at=now,
            updated_at=now,
        )
    live.update(live_visitor_id=F("visitor_id"))


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
        migrations.RunPython(fill_live_visitor_ids, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="visitorlink",
            name="live_visitor_id",
            field=models.CharField(
                blank=True, editable=False, max_length=128, null=True, unique=True
            ),
        ),
        migrations.RemoveConstraint(
            model_name="visitorlink",
            name="django_giosg_one_live_link_per_visitor",
        ),
    ]
