import pytest

from stream.kpi.surveys import csat_satisfied, net_promoter_score, nps_category


@pytest.mark.parametrize(
    ("score", "category"),
    [
        (0, "detractor"),
        (6, "detractor"),
        (7, "passive"),
        (8, "passive"),
        (9, "promoter"),
        (10, "promoter"),
    ],
)
def test_nps_bands(score: int, category: str) -> None:
    assert nps_category(score) == category


def test_csat_counts_four_and_five_as_satisfied() -> None:
    assert [csat_satisfied(s) for s in range(1, 6)] == [False, False, False, True, True]


def test_net_promoter_score_ranges_from_minus_to_plus_hundred() -> None:
    assert net_promoter_score(10, 0, 10) == 100.0
    assert net_promoter_score(0, 10, 10) == -100.0
    assert net_promoter_score(5, 2, 10) == 30.0
    assert net_promoter_score(0, 0, 0) is None
