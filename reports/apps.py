from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = "Audit reports"

    def ready(self) -> None:
        """Register the report signing checks."""
        from . import checks  # noqa: F401  (registers the checks)
