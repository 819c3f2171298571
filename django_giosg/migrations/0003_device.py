"""A binding belongs to its browser: the device that made a link, a browser close still due, and
the browser each visitor id belongs to.

Links made before this migration have no device (``""``): another browser's login or capture may
take them over only once their session has ended, as for any other browser's. Visitor ids get
their browser when one next reports or binds them.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_giosg", "0002_live_visitor_id"),
    ]

    operations = [
        migrations.CreateModel(
            name="VisitorOrigin",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("visitor_id", models.CharField(max_length=128, unique=True)),
                ("device", models.CharField(max_length=64)),
                ("seen_at", models.DateTimeField()),
            ],
        ),
        migrations.AddField(
            model_name="visitorlink",
            name="close_in_browser",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="visitorlink",
            name="device",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddIndex(
            model_name="visitorlink",
            index=models.Index(fields=["device", "state"], name="django_giosg_device"),
        ),
        migrations.AddIndex(
            model_name="visitororigin",
            index=models.Index(fields=["seen_at"], name="django_giosg_origin_seen"),
        ),
    ]
