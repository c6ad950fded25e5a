"""Append-only: the application never changes or deletes an access event."""

import pytest

from compliance.models import AccessEvent, AppendOnlyError

pytestmark = pytest.mark.django_db


def test_a_recorded_event_cannot_be_saved_again(record):
    event = record()
    event.reason = "edited"

    with pytest.raises(AppendOnlyError):
        event.save()

    assert AccessEvent.objects.get().reason == "event 0"


def test_a_recorded_event_cannot_be_deleted(record):
    event = record()

    with pytest.raises(AppendOnlyError):
        event.delete()

    assert AccessEvent.objects.count() == 1


def test_querysets_refuse_bulk_updates_and_deletes(record):
    record(3)

    with pytest.raises(AppendOnlyError):
        AccessEvent.objects.update(reason="edited")
    with pytest.raises(AppendOnlyError):
        AccessEvent.objects.filter(seq=2).delete()
    with pytest.raises(AppendOnlyError):
        AccessEvent.objects.all().delete()
    event = AccessEvent.objects.get(seq=1)
    event.reason = "edited"
    with pytest.raises(AppendOnlyError):
        AccessEvent.objects.bulk_update([event], ["reason"])

    assert sorted(AccessEvent.objects.values_list("reason", flat=True)) == [
        "event 0",
        "event 1",
        "event 2",
    ]


def test_events_are_never_created_outside_the_chain(record):
    last = record()
    forged = {"seq": 2, "action": "download", "outcome": "allowed", "hash": "f" * 64}

    with pytest.raises(AppendOnlyError):
        AccessEvent(**forged).save()
    with pytest.raises(AppendOnlyError):
        AccessEvent.objects.create(**forged)
    with pytest.raises(AppendOnlyError):
        AccessEvent.objects.bulk_create([AccessEvent(**forged)])

    assert list(AccessEvent.objects.values_list("seq", "hash")) == [(1, last.hash)]


def test_the_base_manager_refuses_changes_too(record):
    from compliance.models import AccessEvent, AppendOnlyError

    record(1)
    with pytest.raises(AppendOnlyError):
        AccessEvent._base_manager.filter(seq=1).update(reason="rewritten")
