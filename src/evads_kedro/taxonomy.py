"""E-VAds taxonomy: 5 tasks in 2 dimensions, 8 product categories (SPEC §4).

Categories are keyed by the Chinese label exactly as the released timelines write it in their
``Category:`` line (``食品生鲜 & 医药保健``; the paper prints ``食品生鲜/医药保健``, accepted as an
alias); each has a stable English slug used in file names, plots and reports.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    code: str
    name: str
    dimension: str
    brief: str


PERCEPTION = "Perception"
COGNITION = "Cognition & Reasoning"
DIMENSIONS: tuple[str, ...] = (PERCEPTION, COGNITION)

TASKS: dict[str, Task] = {
    t.code: t
    for t in (
        Task("BP", "Basic Perception", PERCEPTION, "attributes, price, brand, colour, material"),
        Task("CM", "Cross-Modal Detection", PERCEPTION, "consistency between ASR, OCR and visuals"),
        Task("ML", "Marketing Logic", COGNITION, "hook -> selling point -> call to action"),
        Task("CI", "Consumer Insight", COGNITION, "target audience, emotional appeal"),
        Task("RC", "Regulatory Compliance", COGNITION, "false or absolute claims under advertising law"),
    )
}
TASK_CODES: tuple[str, ...] = tuple(TASKS)


@dataclass(frozen=True)
class Category:
    label_zh: str
    slug: str
    name: str
    paper_share: float  # share of the 3,961 benchmark videos, SPEC §4


CATEGORIES: dict[str, Category] = {
    c.label_zh: c
    for c in (
        Category("服饰鞋包", "apparel", "Apparel & Bags", 0.1589),
        Category("美容彩妆", "beauty", "Beauty & Makeup", 0.1076),
        Category("个人护理", "personal_care", "Personal Care", 0.1024),
        Category("食品生鲜 & 医药保健", "food_health", "Food & Health", 0.1164),
        Category("家居家装", "home", "Home & Furnishing", 0.1527),
        Category("家用电器", "appliances", "Home Appliances", 0.1517),
        Category("母婴玩具 & 宠物", "baby_pet", "Baby, Toys & Pets", 0.1229),
        Category("其他", "others", "Others", 0.0876),
    )
}
CATEGORY_BY_SLUG: dict[str, Category] = {c.slug: c for c in CATEGORIES.values()}
# Spellings seen in the paper and in hand-written sidecars.
CATEGORY_ALIASES: dict[str, str] = {
    "食品生鲜/医药保健": "食品生鲜 & 医药保健",
    "母婴玩具/宠物": "母婴玩具 & 宠物",
}
DEFAULT_CATEGORY = "其他"


def find_category(label: str | None) -> Category | None:
    """The category of a Chinese label (official or alias, spacing-insensitive) or a slug."""
    if not label:
        return None
    label = label.strip()
    label = CATEGORY_ALIASES.get(label, label)
    if label in CATEGORIES:
        return CATEGORIES[label]
    if label in CATEGORY_BY_SLUG:
        return CATEGORY_BY_SLUG[label]
    squashed = label.replace(" ", "").replace("&", "/")
    for c in CATEGORIES.values():
        if c.label_zh.replace(" ", "").replace("&", "/") == squashed:
            return c
    return None


def canonical_category(label: str | None) -> str:
    """The official Chinese label for ``label``; unknown labels are returned unchanged."""
    found = find_category(label)
    return found.label_zh if found else (label or DEFAULT_CATEGORY)


def dimension_of(task_code: str) -> str:
    """Dimension of a task code; raises ``KeyError`` naming the legal codes otherwise."""
    try:
        return TASKS[task_code].dimension
    except KeyError:
        raise KeyError(f"unknown task {task_code!r}; expected one of {', '.join(TASK_CODES)}") from None


def category_slug(label: str | None) -> str:
    """English slug of a category given its Chinese label, an alias or its slug; else ``unknown``."""
    found = find_category(label)
    return found.slug if found else "unknown"


def category_name(label: str | None) -> str:
    """English display name of a category label; ``Unknown category`` otherwise."""
    found = find_category(label)
    return found.name if found else "Unknown category"


# Spellings of a task label a split may carry (``ques_categories`` of EVAds_TEST): the code,
# the English name, or a Chinese name. Matching ignores case, spaces, '-', '_' and '&'/'and'.
TASK_NAMES_ZH: dict[str, tuple[str, ...]] = {
    "BP": ("基础感知", "基本感知"),
    "CM": ("跨模态检测", "跨模态一致性", "跨模态一致性检测", "跨模态"),
    "ML": ("营销逻辑",),
    "CI": ("消费者洞察", "用户洞察", "消费洞察"),
    "RC": ("合规审查", "广告合规", "合规性", "法规合规", "合规检测"),
}


def _squash(label: str) -> str:
    out = label.strip().lower()
    for old, new in (("&", ""), (" and ", ""), ("-", ""), ("_", ""), (" ", ""), ("/", "")):
        out = out.replace(old, new)
    return out


_TASK_SPELLINGS: dict[str, str] = {}
for _code, _task in TASKS.items():
    for _spelling in (_code, _task.name, *TASK_NAMES_ZH.get(_code, ())):
        _TASK_SPELLINGS[_squash(_spelling)] = _code


def task_from_label(label: object) -> str | None:
    """Task code of a task label given as code, English or Chinese name (``"BP"``, ``"Basic
    Perception"``, ``"基础感知"``, also ``"BP: Basic Perception"``); None for an unknown
    spelling, which callers keep and list rather than drop."""
    if not isinstance(label, str) or not label.strip():
        return None
    key = _squash(label)
    if key in _TASK_SPELLINGS:
        return _TASK_SPELLINGS[key]
    for sep in (":", "：", "(", "（"):  # "BP: Basic Perception", "基础感知 (BP)"
        head = _squash(label.split(sep)[0])
        if sep in label and head in _TASK_SPELLINGS:
            return _TASK_SPELLINGS[head]
    return None
