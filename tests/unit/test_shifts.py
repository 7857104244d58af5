from stream.kpi.shifts import agent_pieces, apply_shift, on_intervals

MINUTE = 60_000


def test_on_then_off_counts_one_then_none() -> None:
    record, delta = apply_shift(None, "on", 1_000)
    assert delta == 1
    record, delta = apply_shift(record, "on", 2_000)  # already on
    assert delta == 0
    record, delta = apply_shift(record, "off", 3_000)
    assert delta == -1
    assert (record["state"], record["at_ms"]) == ("off", 3_000)
    assert record["events"] == [[1_000, "on"], [2_000, "on"], [3_000, "off"]]


def test_an_older_event_delivered_late_changes_nothing_live_but_joins_the_history() -> None:
    record, _ = apply_shift(None, "on", 5_000)
    same, delta = apply_shift(record, "off", 4_000)
    assert delta == 0
    assert (same["state"], same["at_ms"]) == ("on", 5_000)
    assert same["events"] == [[4_000, "off"], [5_000, "on"]]


def test_intervals_follow_event_time_and_stay_open_without_an_off() -> None:
    events = [[50, "on"], [10, "on"], [30, "off"], [30, "on"], [20, "on"]]
    # 10 on (20 on again changes nothing), 30 off then on in the same millisecond.
    assert on_intervals(events) == [(10, 30), (30, None)]
    assert on_intervals([[5, "off"]]) == []


def test_time_on_shift_is_cut_at_every_window_boundary() -> None:
    pieces = agent_pieces([(30_000, 150_000)], 0, 10 * MINUTE, MINUTE)
    assert [(p.at_ms, p.value) for p in pieces] == [(0, 30.0), (60_000, 60.0), (120_000, 30.0)]
    # An open interval counts up to the horizon; nothing before `low` is given again.
    open_ended = agent_pieces([(0, None)], MINUTE, 150_000, MINUTE)
    assert [(p.at_ms, p.value) for p in open_ended] == [(60_000, 60.0), (120_000, 30.0)]
