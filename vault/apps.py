from django.apps import AppConfig


class VaultConfig(AppConfig):
    name = "vault"
    verbose_name = "Vault"

    def ready(self) -> None:
        # Registers the checks, the settings receiver and the account receivers (access log).
        from . import accounts, checks, keys  # noqa: F401
