import pytest

from stream.export.api import KpiQuery, QueryError, kpis_json, parse_query
from stream.kpi.partition import PartitionKpis
from stream.kpi.snapshot import build_snapshot

WINDOWS = ("1m", "1h")


def test_no_parameters_ask_for_everything() -> None:
    assert parse_query({}, WINDOWS) == KpiQuery()


@pytest.mark.parametrize(
    ("params", "parameter", "text"),
    [
        ({"kpi": "nps_of_mars"}, "kpi", "nps_of_mars"),
        ({"window": "5m"}, "window", "5m"),
        ({"priority": "critical"}, "priority", "critical"),
        ({"limit": "3"}, "limit", "unknown parameter"),
    ],
)
def test_bad_parameters_name_themselves(params: dict, parameter: str, text: str) -> None:
    with pytest.raises(QueryError, match=text) as caught:
        parse_query(params, WINDOWS)
    assert caught.value.parameter == parameter


def test_filters_apply_to_every_kpi() -> None:
    part = PartitionKpis(window_sizes_ms=(60_000,), grace_ms=0)
    part.active.update({("billing", "urgent", "new"): 2, ("returns", "low", "open"): 1})
    snap = build_snapshot({0: part}, now_ms=None)
    query = parse_query({"kpi": "tickets_active", "priority": "urgent"}, WINDOWS)
    body = kpis_json(snap, query)
    assert body["tickets_active"] == [
        {"queue": "billing", "priority": "urgent", "status": "new", "count": 2}
    ]
    assert "sla" not in body
    assert "first_response_windows" not in body
