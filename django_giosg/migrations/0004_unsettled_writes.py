"""Writes whose outcome is unknown: when a link's unanswered sets and deletes may still land at
giosg, and the ``settling`` state (and ``settle`` action) of a detached binding waiting for them.

Existing links have no unanswered writes recorded: nothing changes for them. Reversed, a
``settling`` link becomes ``pending_detach`` again and a failed settle a failed detach: the code
before this migration detaches them once more, the only way it knows to delete their keys.
"""

from typing import Any

from django.db import migrations, models


def settling_to_pending_detach(apps: Any, schema_editor: Any) -> None:
    links = apps.get_model("django_giosg", "VisitorLink").objects.using(
        schema_editor.connection.alias
    )
    links.filter(state="settling").update(state="pending_detach")
    links.filter(failed_action="settle").update(failed_action="detach")


class Migration(migrations.Migration):
    dependencies = [
        ("django_giosg", "0003_device"),
    ]

    operations = [
        migrations.RunPython(
            migrations.RunPython.noop,
            settling_to_pending_detach,
            hints={"model_name": "visitorlink"},  # the router decides on which database
        ),
        migrations.AddField(
            model_name="visitorlink",
            name="deletes_unsettled_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="visitorlink",
            name="sets_unsettled_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="visitorlink",
            name="failed_action",
            field=models.CharField(
                blank=True,
                choices=[("attach", "Attach"), ("detach", "Detach"), ("settle", "Settle")],
                max_length=8,
            ),
        ),
        migrations.AlterField(
            model_name="visitorlink",
            name="state",
            field=models.CharField(
                choices=[
                    ("pending_attach", "Pending Attach"),
                    ("attached", "Attached"),
                    ("pending_detach", "Pending Detach"),
                    ("settling", "Settling"),
                    ("detached", "Detached"),
                    ("failed", "Failed"),
                ],
                default="pending_attach",
                max_length=16,
            ),
        ),
    ]
