from stream.kpi.shifts import apply_shift


def test_on_then_off_counts_one_then_none() -> None:
    record, delta = apply_shift(None, "on", 1_000)
    assert delta == 1
    record, delta = apply_shift(record, "on", 2_000)  # already on
    assert delta == 0
    record, delta = apply_shift(record, "off", 3_000)
    assert delta == -1
    assert record == {"state": "off", "at_ms": 3_000}


def test_an_older_event_delivered_late_changes_nothing() -> None:
    record, _ = apply_shift(None, "on", 5_000)
    same, delta = apply_shift(record, "off", 4_000)
    assert delta == 0
    assert same == record
