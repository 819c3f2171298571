from django.apps import AppConfig


class GiosgConfig(AppConfig):
    """Wires the app up when Django starts; importing the package does nothing else."""

    name = "django_giosg"
    verbose_name = "giosg"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import conf  # noqa: F401  (connects the setting_changed receiver)
