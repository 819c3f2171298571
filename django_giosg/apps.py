from django.apps import AppConfig
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.core import checks
from django.db.models.signals import pre_delete


class GiosgConfig(AppConfig):
    """Wires the app up when Django starts; importing the package does nothing else."""

    name = "django_giosg"
    verbose_name = "giosg"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks as giosg_checks
        from . import (
            conf,  # noqa: F401  (connects the setting_changed receiver)
            receivers,
        )

        checks.register(giosg_checks.check_settings)
        checks.register(giosg_checks.check_middleware)
        checks.register(giosg_checks.check_sessions)
        checks.register(giosg_checks.check_urls, checks.Tags.urls)
        checks.register(giosg_checks.check_templates, checks.Tags.templates)
        user_logged_in.connect(
            receivers.on_user_logged_in, dispatch_uid="django_giosg.on_user_logged_in"
        )
        user_logged_out.connect(
            receivers.on_user_logged_out, dispatch_uid="django_giosg.on_user_logged_out"
        )
        pre_delete.connect(
            receivers.on_user_pre_delete,
            sender=settings.AUTH_USER_MODEL,
            dispatch_uid="django_giosg.on_user_pre_delete",
        )
