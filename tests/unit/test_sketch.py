import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.kpi.sketch import QuantileSketch

VALUES = st.lists(
    st.floats(min_value=0.001, max_value=500_000, allow_nan=False), min_size=1, max_size=400
)
QS = st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0])


def exact_quantile(values: list[float], q: float) -> float:
    # The rank convention of DDSketch: the value at rank floor(q * (n - 1)).
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


@settings(max_examples=200)
@given(VALUES, QS)
def test_quantile_within_one_percent_relative_error(values: list[float], q: float) -> None:
    sketch = QuantileSketch(0.01)
    for v in values:
        sketch.add(v)
    got = sketch.quantile(q)
    assert got is not None
    expected = exact_quantile(values, q)
    assert abs(got - expected) <= 0.01 * expected + 1e-9


@settings(max_examples=100)
@given(VALUES, VALUES, QS)
def test_merge_equals_sketch_of_union(a: list[float], b: list[float], q: float) -> None:
    left, right, union = QuantileSketch(), QuantileSketch(), QuantileSketch()
    for v in a:
        left.add(v)
        union.add(v)
    for v in b:
        right.add(v)
        union.add(v)
    left.merge(right)
    assert left.count == union.count == len(a) + len(b)
    assert left.quantile(q) == pytest.approx(union.quantile(q))


@given(VALUES)
def test_serialised_sketch_answers_the_same(values: list[float]) -> None:
    sketch = QuantileSketch()
    for v in values:
        sketch.add(v)
    sketch.add(0.0)
    copy = QuantileSketch.from_dict(sketch.to_dict())
    assert copy.count == sketch.count
    assert copy.sum == pytest.approx(sketch.sum)
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        assert copy.quantile(q) == sketch.quantile(q)


def test_empty_sketch_has_no_quantile_and_negative_values_are_refused() -> None:
    sketch = QuantileSketch()
    assert sketch.quantile(0.5) is None
    with pytest.raises(ValueError, match=">= 0"):
        sketch.add(-1.0)


def test_sketches_of_different_accuracy_do_not_merge() -> None:
    with pytest.raises(ValueError, match="different accuracy"):
        QuantileSketch(0.01).merge(QuantileSketch(0.02))


@settings(max_examples=200)
@given(VALUES, VALUES.flatmap(lambda b: st.tuples(st.just(b), st.permutations(b))))
def test_remove_is_the_exact_inverse_of_add(
    kept: list[float], taken: tuple[list[float], list[float]]
) -> None:
    added, removed_in_other_order = taken
    only_kept, sketch = QuantileSketch(), QuantileSketch()
    for v in kept:
        only_kept.add(v)
        sketch.add(v)
    for v in added:
        sketch.add(v)
    for v in removed_in_other_order:
        sketch.remove(v)
    # Same buckets, same counts: every quantile exactly as if never added.
    assert sketch.to_dict() | {"s": 0} == only_kept.to_dict() | {"s": 0}
    assert sketch == only_kept
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        assert sketch.quantile(q) == only_kept.quantile(q)
    # The sum only up to float rounding: (a + b) - b need not be a.
    assert abs(sketch.sum - only_kept.sum) <= 1e-12 * (sum(kept) + 2 * sum(added))


@given(VALUES.flatmap(lambda b: st.tuples(st.just(b), st.permutations(b))))
def test_removing_every_value_leaves_an_empty_sketch_with_sum_zero(
    values: tuple[list[float], list[float]],
) -> None:
    added, removed = values
    sketch = QuantileSketch()
    for v in [*added, 0.0]:
        sketch.add(v)
    for v in [0.0, *removed]:
        sketch.remove(v)
    assert sketch.count == 0
    assert sketch.sum == 0.0  # exactly: no float residue
    assert sketch.quantile(0.5) is None
    assert sketch.to_dict() == QuantileSketch().to_dict()


def test_weighted_add_and_remove_of_a_value() -> None:
    sketch = QuantileSketch()
    sketch.add(10.0, 3)
    sketch.add(10.0, -2)
    assert (sketch.count, sketch.sum) == (1, 10.0)
    assert sketch.quantile(0.5) == pytest.approx(10.0, rel=0.01)


@settings(max_examples=200)
@given(
    st.lists(st.floats(min_value=0, max_value=500_000, allow_nan=False), max_size=300),
    st.lists(st.sampled_from([-0.5, 0.0, 0.25, 0.5, 0.9, 0.99, 1.0, 1.5]), max_size=5),
)
def test_quantiles_at_once_answer_what_quantile_answers_one_by_one(
    values: list[float], qs: list[float]
) -> None:
    sketch = QuantileSketch(0.01)
    for v in values:
        sketch.add(v)
    assert sketch.quantiles(tuple(qs)) == [sketch.quantile(q) for q in qs]
