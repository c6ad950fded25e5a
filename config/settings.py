"""Docvault settings: the only module that reads the environment.

Values come from real environment variables first, then from a git-ignored `.env` file in the project
folder (`DOCVAULT_ENV_FILE` names another one; empty disables it). Any secret can also be given as
`NAME_FILE`, the path of a file holding it (Docker/Kubernetes secrets).
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _dotenv_read(path: Path) -> dict[str, str]:
    """Return the KEY=VALUE pairs of a .env file (comments, blank lines and quotes handled)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


_env_file = os.environ.get("DOCVAULT_ENV_FILE", str(BASE_DIR / ".env"))
_ENV = {**(_dotenv_read(Path(_env_file)) if _env_file else {}), **os.environ}


def env(name: str, default: str | None = None) -> str | None:
    """Return a setting from the environment, `.env`, or the file named by NAME_FILE."""
    if name in _ENV:
        return _ENV[name]
    path = _ENV.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path} cannot be read: {exc}") from exc
    return default


def env_bool(name: str, default: bool = False) -> bool:
    """Return a boolean setting: 1/true/yes/on are true."""
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    """Return a comma-separated setting as a list of non-empty items."""
    return [item.strip() for item in (env(name, default) or "").split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG")
SECRET_KEY = env("DJANGO_SECRET_KEY") or ""
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # The dashboard: Bootstrap from our own static files (the `bootstrap` app), tables, filters.
    "django_bootstrap5",
    "bootstrap",
    "django_tables2",
    "django_filters",
    "vault",
    "compliance",
    "reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Before CsrfViewMiddleware: its process_view reads request.POST, which parses the body.
    "vault.middleware.RequestLimitMiddleware",
    "vault.middleware.PrivatePagesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions stop "database is locked" when a reader turns writer (the audit chain's
    # append reads the head, then inserts); WAL lets readers run beside the writer.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT") or BASE_DIR / "var" / "static")
# The site's own stylesheet (one look for the portal and the dashboard); Bootstrap comes from the
# `bootstrap` app.
STATICFILES_DIRS = [BASE_DIR / "static"]

# Encrypted at rest: MEDIA_ROOT holds ciphertext only and no URL serves it directly; downloads go
# through the vault's views, which check permissions and record every decryption.
MEDIA_ROOT = Path(env("MEDIA_ROOT") or BASE_DIR / "media")
MEDIA_URL = "/vault/"
STORAGES = {
    "default": {"BACKEND": "vault.storage.EncryptedStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# The storage that holds the ciphertext: the local MEDIA_ROOT unless another backend is named.
VAULT_INNER_STORAGE = {
    "BACKEND": env("VAULT_INNER_STORAGE_BACKEND") or "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {},
}
# Uploads are encrypted as they arrive, under a throwaway key: plaintext never reaches a temp file.
FILE_UPLOAD_HANDLERS = ["vault.uploads.EncryptingUploadHandler"]
VAULT_MAX_UPLOAD_SIZE = int(env("VAULT_MAX_UPLOAD_SIZE") or 100 * 1024 * 1024)
# A request body may exceed the largest upload by this much (the form around the file); beyond,
# 413 before anything is read. File parts go only to views marked @accepts_uploads (and the admin).
VAULT_REQUEST_MARGIN = int(env("VAULT_REQUEST_MARGIN") or 1024 * 1024)

# Keys: "label:secret,label2:secret2", first entry primary. ENCRYPTION_SECRET alone (the case study's
# name) is one key labelled "default". Never stored in the database, never logged.
VAULT_KEYS = env("VAULT_KEYS")
ENCRYPTION_SECRET = env("ENCRYPTION_SECRET")
VAULT_KDF_SALT = env("VAULT_KDF_SALT")
VAULT_KDF_ITERATIONS = env("VAULT_KDF_ITERATIONS", "600000")

# How many reverse proxies in front of Django append to X-Forwarded-For; 0 ignores the header, so a
# client cannot forge the address the access log records.
ACCESS_LOG_PROXY_COUNT = int(env("ACCESS_LOG_PROXY_COUNT") or 0)
# Key IDs of chain keys dropped from VAULT_KEYS on purpose; events under any other unknown key fail
# verification as forged.
ACCESS_LOG_RETIRED_KEY_IDS = env_list("ACCESS_LOG_RETIRED_KEY_IDS")

# One look for the whole site, served from our own static files (no CDN: the site works offline).
_STATIC_PREFIX = "/" + STATIC_URL.strip("/")
BOOTSTRAP5 = {
    "css_url": {"url": f"{_STATIC_PREFIX}/bootstrap/css/bootstrap.min.css"},
    "javascript_url": {"url": f"{_STATIC_PREFIX}/bootstrap/js/bootstrap.bundle.min.js"},
}
DJANGO_TABLES2_TEMPLATE = "django_tables2/bootstrap5.html"
# The compliance dashboard: a scan older than this many days is flagged on the overview; rows per
# page of the access log.
DASHBOARD_SCAN_MAX_AGE_DAYS = int(env("DASHBOARD_SCAN_MAX_AGE_DAYS") or 7)
DASHBOARD_PAGE_SIZE = int(env("DASHBOARD_PAGE_SIZE") or 50)
# A filtered access log sorted by another column than time: up to this many matches are sorted,
# above it the sort's index is walked instead (see compliance/filters.py).
DASHBOARD_SORT_IN_MEMORY_MAX = int(env("DASHBOARD_SORT_IN_MEMORY_MAX") or 30_000)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Every page: nothing inline, nothing from elsewhere, never framed. The download views send their
# own stricter policy for documents shown inline.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "vault": {"handlers": ["console"], "level": env("VAULT_LOG_LEVEL", "INFO")},
        "compliance": {"handlers": ["console"], "level": "INFO"},
    },
}
