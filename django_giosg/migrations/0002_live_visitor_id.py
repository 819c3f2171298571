"""One live link per visitor on every database: a unique column set only while the link is live.

The partial unique constraint it replaces is ignored by MySQL, MariaDB and Oracle (``models.W036``).
Existing live links get the column before the constraint goes, so the invariant holds throughout.
"""

from typing import Any

from django.db import migrations, models
from django.db.models import F

LIVE_STATES = ["pending_attach", "attached"]


def fill_live_visitor_ids(apps: Any, schema_editor: Any) -> None:
    links = apps.get_model("django_giosg", "VisitorLink")
    live = links.objects.using(schema_editor.connection.alias).filter(state__in=LIVE_STATES)
    live.update(live_visitor_id=F("visitor_id"))


class Migration(migrations.Migration):
    dependencies = [
        ("django_giosg", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="visitorlink",
            name="live_visitor_id",
            field=models.CharField(
                blank=True, editable=False, max_length=128, null=True, unique=True
            ),
        ),
        migrations.RunPython(fill_live_visitor_ids, migrations.RunPython.noop, elidable=True),
        migrations.RemoveConstraint(
            model_name="visitorlink",
            name="django_giosg_one_live_link_per_visitor",
        ),
    ]
