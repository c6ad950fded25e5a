from django.apps import AppConfig


class VaultConfig(AppConfig):
    name = "vault"
    verbose_name = "Vault"

    def ready(self) -> None:
        from . import checks, keys  # noqa: F401  (registers the checks and the settings receiver)
