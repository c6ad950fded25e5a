"""System checks: the database and proxy settings the access log relies on."""

import pytest

from compliance.checks import access_log_check, database_settings_check

SQLITE = "django.db.backends.sqlite3"


def test_the_project_settings_pass():
    assert access_log_check() == []


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ({"ENGINE": SQLITE, "OPTIONS": {"transaction_mode": "IMMEDIATE"}}, []),
        ({"ENGINE": SQLITE, "OPTIONS": {"transaction_mode": "immediate"}}, []),
        ({"ENGINE": SQLITE, "OPTIONS": {}}, ["compliance.W001"]),
        ({"ENGINE": SQLITE, "OPTIONS": {"transaction_mode": "DEFERRED"}}, ["compliance.W001"]),
        ({"ENGINE": "django.db.backends.postgresql"}, []),
        ({"ENGINE": "django.db.backends.mysql"}, ["compliance.E001"]),
    ],
)
def test_database_settings(database, expected):
    assert [message.id for message in database_settings_check("default", database)] == expected


@pytest.mark.parametrize("value", [-1, "1", 1.5, True, None])
def test_a_proxy_count_that_is_not_a_count_is_an_error(settings, value):
    settings.ACCESS_LOG_PROXY_COUNT = value

    assert [message.id for message in access_log_check()] == ["compliance.E002"]


def test_a_proxy_count_is_accepted(settings):
    settings.ACCESS_LOG_PROXY_COUNT = 2

    assert access_log_check() == []
