import pytest

from evads_kedro.taxonomy import (
    CATEGORIES,
    DIMENSIONS,
    TASKS,
    canonical_category,
    category_slug,
    dimension_of,
)


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
    # The release writes " & ", the paper "/": both resolve to the same category.
    assert category_slug("食品生鲜 & 医药保健") == category_slug("食品生鲜/医药保健") == "food_health"
    assert canonical_category("母婴玩具/宠物") == "母婴玩具 & 宠物"
    assert canonical_category(None) == "其他"
    with pytest.raises(KeyError, match="expected one of"):
        dimension_of("XX")
