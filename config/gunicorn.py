"""gunicorn settings for production: `gunicorn --config config/gunicorn.py` (what `make serve` runs).

Only gunicorn's own knobs live here, read from GUNICORN_* variables; the application's settings stay
in config/settings.py. Workers are threaded (gthread): the arbiter's heartbeat keeps running while a
thread streams a large download to a slow client, so `timeout` catches a hung worker, not a long
request. The application is imported by each worker (no preload): a worker derives its keys once
and holds its own database connections, and a restart picks up new code and keys.
"""

import os

wsgi_app = "config.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")
workers = int(os.environ.get("GUNICORN_WORKERS") or 2 * (os.cpu_count() or 1) + 1)
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
preload_app = False

# Seconds: a silent worker is killed after `timeout`; a restart waits `graceful_timeout` for the
# requests in flight; an idle keep-alive connection from the load balancer stays `keepalive`.
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 60)
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or 30)
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE") or 5)
# Recycle workers now and then, staggered, so that no slow leak grows without bound.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS") or 10000)
max_requests_jitter = max_requests // 10

# The load balancer's addresses: only they may set X-Forwarded-Proto for gunicorn.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
# The heartbeat file on tmpfs: a disk-backed /tmp can stall it under I/O load.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108

# Logs to stdout/stderr for the platform to collect. The access log names the path without its
# query string and leaves out the referrer (both can carry document names or tokens); the request
# id ties a line to the access log's event and to error pages.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
access_log_format = (
    '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s" %({x-request-id}i)s'
)
