import pytest

from evads_kedro.taxonomy import CATEGORIES, DIMENSIONS, TASKS, category_slug, dimension_of


def test_five_tasks_in_two_dimensions():
    assert list(TASKS) == ["BP", "CM", "ML", "CI", "RC"]
    assert {t.dimension for t in TASKS.values()} == set(DIMENSIONS)
    assert [c for c in TASKS if dimension_of(c) == "Perception"] == ["BP", "CM"]


def test_eight_categories_shares_sum_to_one():
    assert len(CATEGORIES) == 8
    assert sum(c.paper_share for c in CATEGORIES.values()) == pytest.approx(1.0, abs=1e-3)
    assert len({c.slug for c in CATEGORIES.values()}) == 8


def test_category_lookup():
    assert category_slug("服饰鞋包") == "apparel"
    assert category_slug("apparel") == "apparel"
    assert category_slug("不存在") == "unknown"
    with pytest.raises(KeyError, match="expected one of"):
        dimension_of("XX")
