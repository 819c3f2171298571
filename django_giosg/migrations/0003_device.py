"""A binding belongs to its browser: the device that made a link, and a browser close still due.

Links made before this migration have no device (``""``): another user's login or capture may
take them over only once their session has ended, as for any other device's.
"""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_giosg", "0002_live_visitor_id"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
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
    ]
