"""Survey scales: CSAT (1..5) and NPS (0..10), as KPIS.md defines them."""

from __future__ import annotations


def csat_satisfied(score: int) -> bool:
    """H13: an answer of 4 or 5 out of 5 counts as satisfied."""
    return score >= 4


def nps_category(score: int) -> str:
    """H14: 9-10 promoter, 7-8 passive, 0-6 detractor."""
    if score >= 9:
        return "promoter"
    return "passive" if score >= 7 else "detractor"


def net_promoter_score(promoters: int, detractors: int, answers: int) -> float | None:
    """% promoters - % detractors, -100..100; None without answers."""
    if answers == 0:
        return None
    return 100.0 * (promoters - detractors) / answers
