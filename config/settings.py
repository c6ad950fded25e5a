"""Docvault settings: the only module that reads the environment.

Values come from real environment variables first, then from a git-ignored `.env` file in the project
folder (`DOCVAULT_ENV_FILE` names another one; empty disables it). Any secret can also be given as
`NAME_FILE`, the path of a file holding it (Docker/Kubernetes secrets).
"""

import os
from datetime import timedelta
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


def env_path(name: str) -> str | None:
    """Return a setting that names a file: NAME, or NAME_FILE (the file holding it is that file)."""
    return _ENV.get(name) or _ENV.get(f"{name}_FILE") or None


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
    "axes",
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
    # django-csp's, with the site's policy built once (vault/middleware.py).
    "vault.middleware.SitePolicyCSPMiddleware",
    # Before CsrfViewMiddleware: its process_view reads request.POST, which parses the body.
    "vault.middleware.RequestLimitMiddleware",
    "vault.middleware.PrivatePagesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "vault.accounts.SessionTimeoutMiddleware",
    "vault.accounts.AccessContextMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a locked-out login (site or admin) into the lockout page.
    "axes.middleware.AxesMiddleware",
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
    # Validates nothing: records every password change in the access log.
    {"NAME": "vault.accounts.PasswordChangeRecorder"},
]
# django-axes first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
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
# Production serves its static files itself through WhiteNoise, from collectstatic's hashed and
# compressed copies (`make serve` sets DJANGO_SERVE_STATIC=1). Development and tests keep Django's
# plain storage: no build step, no manifest to keep in step.
if env_bool("DJANGO_SERVE_STATIC"):
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
        "whitenoise.middleware.WhiteNoiseMiddleware",
    )
    STORAGES["staticfiles"] = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}
# The storage that holds the ciphertext: the local MEDIA_ROOT unless another backend is named.
VAULT_INNER_STORAGE = {
    "BACKEND": env("VAULT_INNER_STORAGE_BACKEND") or "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {},
}
# The object store, when VAULT_INNER_STORAGE_BACKEND=storages.backends.s3.S3Storage: django-storages'
# own names. Keys are path-addressed (any S3-compatible server), signed with SigV4, private (no ACL),
# and never overwritten by a save; the vault reads them with ranged GETs (vault/objectstore.py).
AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME")
AWS_S3_ENDPOINT_URL = env("AWS_S3_ENDPOINT_URL")
AWS_S3_REGION_NAME = env("AWS_S3_REGION_NAME")
AWS_ACCESS_KEY_ID = env("AWS_ACCESS_KEY_ID")
AWS_SECRET_ACCESS_KEY = env("AWS_SECRET_ACCESS_KEY")
AWS_S3_ADDRESSING_STYLE = env("AWS_S3_ADDRESSING_STYLE", "path")
AWS_S3_SIGNATURE_VERSION = "s3v4"
AWS_DEFAULT_ACL = None
AWS_S3_FILE_OVERWRITE = False
# Uploads are encrypted as they arrive, under a throwaway key: plaintext never reaches a temp file.
FILE_UPLOAD_HANDLERS = ["vault.uploads.EncryptingUploadHandler"]
VAULT_MAX_UPLOAD_SIZE = int(env("VAULT_MAX_UPLOAD_SIZE") or 100 * 1024 * 1024)
# The case study's Fernet files are read whole into memory: up to this size; off once none are left.
VAULT_LEGACY_READ = env_bool("VAULT_LEGACY_READ", True)
VAULT_LEGACY_MAX_SIZE = int(env("VAULT_LEGACY_MAX_SIZE") or 256 * 1024 * 1024)
# Downloads from 32 MiB decrypt the next segments in a thread while the server writes: "auto" (on
# from vault.downloads.READ_AHEAD_AUTO_CORES usable cores), "on" or "off".
VAULT_READ_AHEAD = (env("VAULT_READ_AHEAD") or "auto").strip().lower()
if VAULT_READ_AHEAD not in ("auto", "on", "off"):
    raise ImproperlyConfigured("VAULT_READ_AHEAD must be auto, on or off.")
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
# Seconds between the recorder's automatic publications of the chain head (0: only verifications and
# `audit_publish_head` publish).
ACCESS_LOG_HEAD_PUBLISH_INTERVAL = int(env("ACCESS_LOG_HEAD_PUBLISH_INTERVAL") or 86400)
# Days an access event is kept; `audit_prune` removes older ones behind a checkpoint (never under a
# legal hold). Two years by default.
ACCESS_LOG_RETENTION_DAYS = int(env("ACCESS_LOG_RETENTION_DAYS") or 730)

# Signed audit reports (reports/). The organisation's signing certificate and key: a PKCS#12 file and
# its passphrase, or PEM files. Paths come as NAME or NAME_FILE, passphrases as secrets. Without them
# a report is refused, never produced unsigned. `python manage.py report_signing_cert` makes a
# development pair. REPORT_TRUST_ROOTS: the PEM CA files (comma-separated) verification trusts.
REPORT_SIGNING_P12 = env_path("REPORT_SIGNING_P12")
REPORT_SIGNING_P12_PASSPHRASE = env("REPORT_SIGNING_P12_PASSPHRASE")
REPORT_SIGNING_CERT = env_path("REPORT_SIGNING_CERT")
REPORT_SIGNING_KEY = env_path("REPORT_SIGNING_KEY")
REPORT_SIGNING_KEY_PASSPHRASE = env("REPORT_SIGNING_KEY_PASSPHRASE")
REPORT_TRUST_ROOTS = [
    path.strip() for path in (env_path("REPORT_TRUST_ROOTS") or "").split(",") if path.strip()
]
# What the report's cover and record of processing (GDPR Art. 30(1)) say; unset entries are printed
# as "not configured", never invented.
REPORT_ORGANISATION = env("REPORT_ORGANISATION")
REPORT_CONTROLLER = env("REPORT_CONTROLLER")  # (a) name and contact details
REPORT_REPRESENTATIVE = env("REPORT_REPRESENTATIVE")  # (a) joint controller / representative
REPORT_DPO = env("REPORT_DPO")  # (a) data protection officer
REPORT_PURPOSES = env("REPORT_PURPOSES")  # (b)
REPORT_DATA_SUBJECTS = env("REPORT_DATA_SUBJECTS")  # (c) categories of data subjects
REPORT_DATA_CATEGORIES = env("REPORT_DATA_CATEGORIES")  # (c) categories of personal data
REPORT_RECIPIENTS = env("REPORT_RECIPIENTS")  # (d)
REPORT_TRANSFERS = env("REPORT_TRANSFERS")  # (e) third countries and safeguards
REPORT_RETENTION = env("REPORT_RETENTION")  # (f) time limits for erasure
REPORT_SECURITY_MEASURES = env("REPORT_SECURITY_MEASURES")  # (g) organisational measures
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

# Sessions: the database keeps only a hash of each session key (vault/sessions.py). Idle timeouts
# and the total lifetime are in seconds (vault/accounts.py SessionTimeoutMiddleware).
SESSION_ENGINE = "vault.sessions"
SESSION_IDLE_TIMEOUT_STAFF = int(env("SESSION_IDLE_TIMEOUT_STAFF") or 15 * 60)
SESSION_IDLE_TIMEOUT = int(env("SESSION_IDLE_TIMEOUT") or 8 * 60 * 60)
SESSION_MAX_LIFETIME = int(env("SESSION_MAX_LIFETIME") or 12 * 60 * 60)
SESSION_COOKIE_AGE = SESSION_MAX_LIFETIME
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HTTPS in production (docs/DEPLOYMENT.md): all off unless set, so `make run` keeps plain HTTP.
SECURE_HSTS_SECONDS = int(env("DJANGO_SECURE_HSTS_SECONDS") or 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT")
# "HTTP_X_FORWARDED_PROTO,https": trust the proxy's word that the request came over HTTPS. Set it
# only behind a proxy that always sets (never passes on) that header.
_proxy_ssl_header = env_list("DJANGO_SECURE_PROXY_SSL_HEADER")
if _proxy_ssl_header and len(_proxy_ssl_header) != 2:
    raise ImproperlyConfigured("DJANGO_SECURE_PROXY_SSL_HEADER must be 'HEADER,value'.")
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header) if _proxy_ssl_header else None
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

# Login throttling (django-axes): AXES_FAILURE_LIMIT failed logins for one account, or from one
# address, lock that account and that address out for AXES_COOLOFF_MINUTES (attempts meanwhile
# extend it). The address is the access log's: ACCESS_LOG_PROXY_COUNT decides who to trust.
AXES_FAILURE_LIMIT = int(env("AXES_FAILURE_LIMIT") or 5)
AXES_COOLOFF_TIME = timedelta(minutes=int(env("AXES_COOLOFF_MINUTES") or 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "compliance.access_log.client_ip_get"
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
# Logins are recorded in the chained access log; axes keeps only its failure counters. A success
# does not reset them: else logging in to one's own account would clear an address's failures.
AXES_DISABLE_ACCESS_LOG = True
AXES_RESET_ON_SUCCESS = False
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "csrfmiddlewaretoken"]

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
