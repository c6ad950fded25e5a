from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        """Register the access log as the vault's recorder, and the app's system checks."""
        from vault.access import recorder_register

        from . import checks  # noqa: F401  (registers the checks)
        from .access_log import access_event_record

        recorder_register(access_event_record)
