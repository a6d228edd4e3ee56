"""Deterministic synthetic sample ads: one per E-VAds category, with ground truth beside each.

``python -m evads_kedro.sample_videos data/01_raw/videos`` writes ``<video_id>.mp4`` and
``<video_id>.json`` (script, real cut times, per-second captions, placed voiceover, sha256).
Rendering lives in ``evads_kedro.synth``; this module holds the sample set and the generator.

Sample set (``SAMPLE_SCRIPTS``): 8 portrait 360x640 25 fps ads, 10-14 s, 3-4 scenes each, changing
Chinese captions (prices, brand names, absolute claims such as 全网第一 for compliance
questions, mixed Latin/digits); Mandarin voiceover in 5, English voiceover in
``ad_care_shampoo``, no audio stream at all in ``ad_home_pillow``, music-like tones without
speech in ``ad_other_phonecase``.

Long samples (``LONG_SAMPLE_SCRIPTS``, ``--long``; not part of the default set, so tests and
``make run`` do not pay for them): two 40 s ads with speech from start to end and three
captions on screen at any time, one Mandarin (``long_zh_jacket``), one alternating Mandarin /
English (``long_mixed_sneaker``): the case that dominates real data (E-VAds median ~33 s).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from evads_kedro.synth import (
    DEFAULT_FONT_INDEX,
    DEFAULT_FONT_PATH,
    AdScript,
    Caption,
    Music,
    Scene,
    Shape,
    Voiceover,
    cuts_video_script,
    random_frames_script,
    render_video,
    sha256_file,
    slow_pan_script,
    static_video_script,
)
from evads_kedro.synth.render import TMP_PREFIX, render_params, write_json_atomic

__all__ = [
    "LONG_SAMPLE_SCRIPTS", "SAMPLE_SCRIPTS", "AdScript", "Caption", "Music", "Scene", "Shape", "Voiceover",
    "cuts_video_script", "generate_sample_videos", "is_up_to_date", "leftover_temp_files",
    "load_ground_truth", "remove_stale_temp_files",
    "random_frames_script", "render_video", "slow_pan_script", "static_video_script",
]

WHITE, BLACK, DARK = (255, 255, 255), (0, 0, 0), (25, 25, 25)
YELLOW, RED, GOLD = (255, 225, 40), (200, 20, 30), (212, 175, 55)


def _cap(start: float, end: float, text: str, position: Any = "bottom", size: int = 34,
         color=WHITE, box=DARK) -> Caption:
    return Caption(start, end, text, position, size, color, box)


def _title(end: float, text: str, box=(40, 40, 40)) -> Caption:
    return Caption(0.0, end, text, "top", 34, WHITE, box)


SAMPLE_SCRIPTS: tuple[AdScript, ...] = (
    AdScript(
        video_id="ad_apparel_jacket", category="服饰鞋包", duration_s=14.0,
        title="Lightweight down jacket: hook (cold snap), selling point (200 g), price and CTA",
        scenes=(
            Scene(0.0, 4.0, (200, 225, 245), (150, 185, 230), (
                Shape("garment", 180, 340, 230, 250, (40, 60, 120), WHITE, vx=4.0),)),
            Scene(4.0, 9.0, (245, 230, 210), (225, 200, 170), (
                Shape("garment", 125, 350, 160, 180, (200, 40, 50), WHITE, vx=-3.0),
                Shape("bag", 270, 380, 120, 140, (140, 90, 50), GOLD, vy=-3.0))),
            Scene(9.0, 14.0, (220, 40, 40), (150, 10, 20), (
                Shape("star", 90, 300, 110, 110, YELLOW, RED),
                Shape("garment", 245, 340, 180, 200, (40, 60, 120), WHITE, vy=-4.0))),
        ),
        captions=(
            _title(14.0, "暖阳NUANYANG羽绒服"),
            _cap(0.2, 3.6, "是谁突然降温了？"),
            _cap(4.0, 9.0, "轻薄羽绒服仅重200g", "upper", 36, WHITE, (200, 40, 50)),
            _cap(4.2, 8.6, "轻薄保暖，只有200克"),
            _cap(9.0, 14.0, "限时￥199买一送一", "upper", 40, YELLOW, (120, 0, 0)),
            _cap(9.0, 14.0, "全网销量第一", "lower", 36, RED, YELLOW),
            _cap(9.2, 13.0, "只要199元"),
        ),
        voiceover=(
            Voiceover(0.3, "是谁突然降温了？"),
            Voiceover(4.3, "轻薄保暖，只有200克"),
            Voiceover(9.3, "只要199元"),
        ),
        tags=("zh", "price", "absolute_claim"),
    ),
    AdScript(
        video_id="ad_beauty_lipstick", category="美容彩妆", duration_s=12.0,
        title="Lipstick: shade hook, absolute durability claim, bundle price",
        scenes=(
            Scene(0.0, 3.6, (250, 210, 220), (235, 160, 180), (
                Shape("tube", 180, 340, 90, 230, (190, 20, 60), GOLD, vy=-5.0),)),
            Scene(3.6, 8.0, (250, 245, 240), (230, 225, 220), (
                Shape("tube", 100, 360, 60, 170, (220, 60, 80), GOLD, vx=2.0),
                Shape("tube", 180, 360, 60, 170, (160, 10, 40), GOLD),
                Shape("tube", 260, 360, 60, 170, (230, 110, 100), GOLD, vx=-2.0))),
            Scene(8.0, 12.0, (120, 40, 120), (60, 10, 70), (
                Shape("box", 180, 360, 200, 160, GOLD, RED, vy=-3.0),
                Shape("star", 295, 250, 80, 80, YELLOW, RED))),
        ),
        captions=(
            _title(12.0, "花漾HUAYANG口红", (190, 20, 60)),
            _cap(0.0, 3.6, "显白不挑皮#520", "upper", 36),
            _cap(0.2, 2.4, "显白口红"),
            _cap(3.6, 8.0, "全网第一持久不脱色", "upper", 34, WHITE, (160, 10, 40)),
            _cap(3.6, 8.0, "全网第一，持久不脱色"),
            _cap(8.0, 12.0, "两支￥89包邮", "upper", 42, YELLOW, (60, 0, 60)),
            _cap(8.1, 11.8, "两支只要89元"),
        ),
        voiceover=(
            Voiceover(0.2, "显白口红"),
            Voiceover(3.7, "全网第一，持久不脱色"),
            Voiceover(8.2, "两支只要89元"),
        ),
        tags=("zh", "price", "absolute_claim"),
    ),
    AdScript(
        video_id="ad_care_shampoo", category="个人护理", duration_s=12.0,
        title="Shampoo with an English voiceover (exact-transcript fixture)",
        scenes=(
            Scene(0.0, 4.0, (200, 240, 240), (120, 200, 210), (
                Shape("bottle", 180, 360, 140, 280, (30, 120, 200), WHITE, vy=-3.0),)),
            Scene(4.0, 8.0, (220, 245, 220), (160, 210, 160), (
                Shape("bottle", 130, 370, 110, 230, (30, 120, 200), WHITE, vx=2.0),
                Shape("jar", 260, 420, 110, 110, (250, 250, 250), (30, 120, 200)))),
            Scene(8.0, 12.0, (20, 40, 90), (10, 20, 50), (
                Shape("bottle", 120, 380, 100, 220, (30, 120, 200), WHITE),
                Shape("bottle", 230, 380, 100, 220, (30, 120, 200), WHITE, vy=-4.0),
                Shape("star", 300, 250, 80, 80, YELLOW, RED))),
        ),
        captions=(
            _title(12.0, "清源QINGYUAN洗发水", (30, 120, 200)),
            _cap(0.0, 4.0, "柔顺清爽500ml", "upper", 38),
            _cap(0.3, 3.7, "Soft & Clean", "bottom", 34),
            _cap(4.0, 8.0, "温和配方全家可用", "upper", 36, WHITE, (40, 120, 60)),
            _cap(8.0, 12.0, "第二件半价59元", "upper", 40, YELLOW, RED),
            _cap(8.0, 12.0, "7天告别头屑", "lower", 36),
        ),
        voiceover=(
            Voiceover(0.3, "This shampoo makes your hair soft and clean.", "en"),
            Voiceover(4.3, "It is gentle enough for the whole family.", "en"),
            Voiceover(8.1, "Order now and get the second bottle at half price.", "en"),
        ),
        tags=("en", "price"),
    ),
    AdScript(
        video_id="ad_food_tea", category="食品生鲜 & 医药保健", duration_s=12.0,
        title="Black tea: origin, 'pure natural' claim, price with gift",
        scenes=(
            Scene(0.0, 4.0, (245, 235, 215), (215, 190, 150), (
                Shape("jar", 140, 360, 150, 190, (120, 50, 20), (230, 200, 120), vx=3.0),
                Shape("bowl", 270, 430, 120, 70, WHITE, (150, 60, 20)))),
            Scene(4.0, 8.0, (180, 220, 150), (90, 150, 80), (
                Shape("circle", 110, 330, 90, 90, (40, 120, 40), vx=5.0, vy=-2.0),
                Shape("circle", 240, 400, 120, 120, (60, 150, 50), vx=-4.0),
                Shape("circle", 170, 500, 70, 70, (30, 100, 30), vy=-3.0))),
            Scene(8.0, 12.0, (190, 30, 30), (120, 10, 10), (
                Shape("box", 180, 330, 220, 170, GOLD, RED, vy=-3.0),)),
        ),
        captions=(
            _title(12.0, "云南古树红茶", (120, 50, 20)),
            _cap(0.3, 3.6, "云南古树红茶"),
            _cap(4.0, 8.0, "零添加100%纯天然", "upper", 36, WHITE, (40, 110, 40)),
            _cap(4.3, 7.8, "零添加，纯天然"),
            _cap(8.0, 12.0, "￥39.9/盒", "upper", 46, YELLOW, (120, 0, 0)),
            _cap(8.0, 12.0, "前100名送茶杯", "lower", 36),
            _cap(8.2, 11.4, "前100名送茶杯"),
        ),
        voiceover=(
            Voiceover(0.3, "云南古树红茶"),
            Voiceover(4.3, "零添加，纯天然"),
            Voiceover(8.2, "前100名送茶杯"),
        ),
        tags=("zh", "price", "absolute_claim"),
    ),
    AdScript(
        video_id="ad_home_pillow", category="家居家装", duration_s=10.0,
        title="Memory-foam pillow, captions only, no audio stream at all",
        scenes=(
            Scene(0.0, 3.0, (30, 40, 80), (10, 15, 40), (
                Shape("pillow", 180, 380, 260, 150, (230, 230, 240), (180, 180, 210), vy=-2.0),
                Shape("circle", 285, 250, 60, 60, (250, 240, 180)))),
            Scene(3.0, 7.0, (240, 240, 250), (200, 205, 225), (
                Shape("pillow", 180, 330, 240, 120, (250, 250, 255), (150, 170, 220), vx=2.0),
                Shape("pillow", 180, 460, 240, 120, (200, 210, 240), (120, 140, 200), vx=-2.0))),
            Scene(7.0, 10.0, (250, 160, 60), (220, 100, 30), (
                Shape("box", 170, 360, 220, 180, (250, 250, 250), (220, 100, 30)),
                Shape("star", 290, 260, 80, 80, RED, YELLOW))),
        ),
        captions=(
            _title(10.0, "眠眠MIANMIAN记忆棉枕"),
            _cap(0.0, 3.0, "还在失眠吗？", "upper", 40),
            _cap(3.0, 7.0, "告别失眠一觉到天亮", "upper", 34, WHITE, (60, 60, 140)),
            _cap(3.0, 7.0, "慢回弹50D记忆棉", "bottom", 34),
            _cap(7.0, 10.0, "￥129包邮到家", "upper", 42, YELLOW, RED),
            _cap(7.0, 10.0, "30天无理由退换", "bottom", 34),
        ),
        tags=("silent", "no_audio_stream", "price", "health_claim"),
    ),
    AdScript(
        video_id="ad_appliance_airfryer", category="家用电器", duration_s=12.0,
        title="Air fryer in four shots: capacity, health claim, 'national-grade' claim, trade-in",
        scenes=(
            Scene(0.0, 3.0, (235, 235, 235), (190, 190, 195), (
                Shape("appliance", 180, 350, 220, 240, (40, 40, 45), (255, 140, 0), vy=-3.0),)),
            Scene(3.0, 6.0, (250, 225, 190), (210, 160, 110), (
                Shape("bowl", 180, 400, 220, 110, WHITE, (230, 170, 60)),
                Shape("circle", 140, 330, 50, 50, (230, 170, 60), vy=4.0),
                Shape("circle", 220, 320, 50, 50, (220, 150, 40), vy=5.0))),
            Scene(6.0, 9.0, (200, 235, 200), (120, 180, 120), (
                Shape("appliance", 180, 370, 200, 220, (245, 245, 245), (40, 160, 80), vx=-3.0),)),
            Scene(9.0, 12.0, (30, 90, 200), (10, 40, 120), (
                Shape("appliance", 150, 380, 180, 200, (40, 40, 45), (255, 140, 0)),
                Shape("star", 290, 270, 90, 90, YELLOW, RED))),
        ),
        captions=(
            _title(12.0, "厨宝CHUBAO空气炸锅"),
            _cap(0.0, 3.0, "5L大容量", "upper", 44, YELLOW, DARK),
            _cap(0.3, 2.9, "5升大容量"),
            _cap(3.0, 6.0, "无油更健康", "upper", 42, WHITE, (200, 100, 20)),
            _cap(3.2, 5.8, "无油更健康"),
            _cap(6.0, 9.0, "国家级品质零油烟", "upper", 36, WHITE, (30, 110, 60)),
            _cap(6.2, 8.8, "国家级品质"),
            _cap(9.0, 12.0, "到手价299元", "upper", 44, YELLOW, RED),
            _cap(9.0, 12.0, "以旧换新再减50", "lower", 36),
            _cap(9.2, 11.6, "以旧换新"),
        ),
        voiceover=(
            Voiceover(0.3, "5升大容量"),
            Voiceover(3.3, "无油更健康"),
            Voiceover(6.3, "国家级品质"),
            Voiceover(9.3, "以旧换新"),
        ),
        tags=("zh", "price", "absolute_claim"),
    ),
    AdScript(
        video_id="ad_babypet_catfood", category="母婴玩具 & 宠物", duration_s=12.0,
        title="Cat food: picky-eater hook, meat content, first-order discount",
        scenes=(
            Scene(0.0, 4.0, (255, 240, 220), (240, 200, 160), (
                Shape("bowl", 200, 440, 180, 90, (200, 80, 60), (255, 240, 220)),
                Shape("circle", 130, 320, 110, 110, (240, 150, 40), vx=4.0))),
            Scene(4.0, 8.0, (220, 240, 255), (160, 200, 240), (
                Shape("bag", 180, 350, 200, 260, (240, 130, 40), WHITE, vy=-3.0),)),
            Scene(8.0, 12.0, (255, 220, 230), (240, 160, 190), (
                Shape("bag", 120, 350, 150, 200, (240, 130, 40), WHITE),
                Shape("bowl", 260, 440, 140, 70, (200, 80, 60), (150, 80, 40), vx=-2.0))),
        ),
        captions=(
            _title(12.0, "喵乐MIAOLE猫粮", (240, 130, 40)),
            _cap(0.0, 4.0, "猫咪挑食怎么办？", "upper", 38),
            _cap(0.3, 3.4, "猫咪挑食怎么办"),
            _cap(4.0, 8.0, "鲜肉含量95%", "upper", 40, WHITE, (200, 60, 40)),
            _cap(4.0, 8.0, "0谷物无诱食剂", "lower", 34),
            _cap(4.2, 8.0, "鲜肉含量高，猫咪爱吃"),
            _cap(8.0, 12.0, "首单立减20元", "upper", 40, YELLOW, RED),
            _cap(8.0, 12.0, "到手￥69/2kg", "lower", 38),
            _cap(8.5, 11.9, "首单立减20元"),
        ),
        voiceover=(
            Voiceover(0.3, "猫咪挑食怎么办？"),
            Voiceover(4.2, "鲜肉含量高，猫咪爱吃"),
            Voiceover(8.6, "首单立减20元"),
        ),
        tags=("zh", "price"),
    ),
    AdScript(
        video_id="ad_other_phonecase", category="其他", duration_s=10.0,
        title="Magnetic phone case: captions over music-like tones, no speech",
        scenes=(
            Scene(0.0, 3.0, (40, 40, 50), (15, 15, 20), (
                Shape("phone", 180, 360, 150, 290, (80, 160, 240), (200, 200, 210), vx=3.0),)),
            Scene(3.0, 6.4, (230, 240, 250), (190, 200, 220), (
                Shape("phone", 120, 370, 120, 240, (240, 90, 120), WHITE, vy=-2.0),
                Shape("phone", 250, 370, 120, 240, (60, 200, 140), WHITE, vy=2.0))),
            Scene(6.4, 10.0, (255, 220, 60), (240, 170, 20), (
                Shape("phone", 150, 380, 140, 270, (30, 30, 30), GOLD),
                Shape("star", 290, 280, 90, 90, RED, WHITE))),
        ),
        captions=(
            _title(10.0, "MagFit磁吸手机壳"),
            _cap(0.0, 3.0, "防摔3米军工级", "upper", 38, YELLOW, DARK),
            _cap(3.0, 6.4, "超薄1.2mm不发黄", "upper", 36),
            _cap(6.4, 10.0, "2件8折￥39起", "upper", 42, WHITE, RED),
            _cap(6.4, 10.0, "今晚8点直播间抢", "bottom", 34),
        ),
        music=(Music(0.0, 10.0, seed=8, bpm=112, volume=0.3),),
        tags=("music", "no_speech", "price"),
    ),
)


# ---- long samples ---------------------------------------------------------------------------
def _long_script(video_id: str, category: str, title: str, lines: Sequence[tuple[str, str]],
                 captions: Sequence[str], duration_s: float = 40.0) -> AdScript:
    """A 40 s ad in the shape that dominates real data (E-VAds median ~33 s): a scene every
    5 s, speech from start to end (one line every ~3.3 s), three captions on screen at any
    time (a title, a changing upper caption, a subtitle of the spoken line)."""
    palette = ((200, 225, 245), (245, 230, 210), (220, 40, 40), (250, 210, 220),
               (220, 245, 220), (120, 40, 120), (250, 245, 240), (60, 60, 90))
    kinds = ("garment", "bag", "bottle", "box", "tube", "star")
    scenes = tuple(
        Scene(t, min(t + 5.0, duration_s), palette[i % 8], palette[(i + 3) % 8], (
            Shape(kinds[i % 6], 180, 360, 160, 200, palette[(i + 5) % 8], WHITE,
                  vx=(-1) ** i * 3.0),))
        for i, t in enumerate(float(x) for x in range(0, int(duration_s), 5)))
    step = duration_s / len(lines)
    voice = tuple(Voiceover(round(0.2 + i * step, 2), text, lang)
                  for i, (text, lang) in enumerate(lines))
    subs = tuple(_cap(round(0.2 + i * step, 2), round(min(duration_s, 0.2 + (i + 1) * step - 0.2), 2),
                      text) for i, (text, _) in enumerate(lines))
    ups = tuple(_cap(float(i) * 2.5, min(duration_s, float(i + 1) * 2.5), c, "upper", 36, WHITE,
                     (160, 10, 40)) for i, c in enumerate(captions))
    return AdScript(video_id=video_id, category=category, duration_s=duration_s, title=title,
                    scenes=scenes, captions=(_title(duration_s, title.split(":")[0]),) + ups + subs,
                    voiceover=voice, tags=("long",))


_ZH_LINES = ("是谁突然降温了", "轻薄保暖只有两百克", "今天直播间限时特价", "买一送一只要九十九元",
             "全网销量第一", "面料柔软又亲肤", "三种颜色任你挑选", "七天无理由退换",
             "下单立刻发货", "库存不多快来抢购", "点击下方链接", "现在下单更优惠")
_UP_CAPS = ("限时￥99", "买一送一", "全网第一", "新品上市", "七天退换", "顺丰包邮", "正品保障",
            "库存告急", "立即下单", "第2件半价", "会员专享", "直播特惠", "今日爆款", "好评如潮",
            "官方旗舰", "品质之选")
LONG_SAMPLE_SCRIPTS: tuple[AdScript, ...] = (
    _long_script("long_zh_jacket", "服饰鞋包", "暖阳羽绒服: 40 s Mandarin ad",
                 [(t, "zh") for t in _ZH_LINES], _UP_CAPS),
    _long_script("long_mixed_sneaker", "服饰鞋包", "AIR跑鞋: 40 s Mandarin/English ad",
                 [("全新气垫跑鞋", "zh"), ("New air runner for every day.", "en"),
                  ("轻盈缓震更舒适", "zh"), ("Light, soft and made to last.", "en"),
                  ("今天只要两百九十九元", "zh"), ("Order now and save thirty percent.", "en"),
                  ("三种配色任你选", "zh"), ("Free shipping on every order.", "en"),
                  ("七天无理由退换", "zh"), ("Run further in comfort.", "en"),
                  ("点击下方链接购买", "zh"), ("Get yours today.", "en")],
                 ("NEW AIR RUNNER", "气垫跑鞋", "￥299", "Free Shipping", "轻盈缓震", "SAVE 30%",
                  "三色可选", "七天退换", "RUN FURTHER", "限时特价", "立即下单", "Get Yours",
                  "官方旗舰", "好评如潮", "会员专享", "今日爆款")),
)


# ---- generation ------------------------------------------------------------------------------
def load_ground_truth(path: str | Path) -> dict[str, Any]:
    """Read a ``<video_id>.json`` ground-truth file (the ``script`` entry stays a dict;
    ``AdScript.from_dict`` rebuilds the dataclass)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def is_up_to_date(script: AdScript, out_dir: str | Path, font_path=DEFAULT_FONT_PATH,
                  font_index: int = DEFAULT_FONT_INDEX) -> bool:
    """True if ``<id>.mp4`` and ``<id>.json`` exist, the json records this script's hash and
    the mp4's sha256 matches the json."""
    mp4 = Path(out_dir) / f"{script.video_id}.mp4"
    js = mp4.with_suffix(".json")
    if not (mp4.is_file() and js.is_file()):
        return False
    try:
        gt = load_ground_truth(js)
    except (OSError, ValueError):
        return False
    return (gt.get("script_hash") == script.script_hash(**render_params(font_path, font_index))
            and gt.get("sha256") == sha256_file(mp4))


def _row(gt: dict[str, Any], mp4: Path, status: str, seconds: float) -> dict[str, Any]:
    return {
        "video_id": gt["video_id"], "category": gt["category"], "duration_s": gt["duration_s"],
        "language": gt["language"], "has_audio": gt["has_audio"], "has_speech": gt["has_speech"],
        "n_cuts": gt["n_cuts"], "n_captions": len(gt["caption_layout"]),
        "n_voiceover": len(gt["voiceover"]), "video_path": str(mp4),
        "json_path": str(mp4.with_suffix(".json")), "sha256": gt["sha256"], "status": status,
        "seconds": round(seconds, 3),
    }


def generate_sample_videos(out_dir: str | Path, scripts: Iterable[AdScript] = SAMPLE_SCRIPTS,
                           overwrite: bool = False, progress: bool = True, *,
                           font_path: str | Path = DEFAULT_FONT_PATH,
                           font_index: int = DEFAULT_FONT_INDEX) -> list[dict[str, Any]]:
    """Render every script into ``out_dir`` as ``<id>.mp4`` + ``<id>.json``; return manifest rows.

    Idempotent: a video whose mp4 and json exist with the same script hash (and a matching
    sha256) is skipped (``status="skipped"``) unless ``overwrite``. Files are written to temp
    files in ``out_dir`` and moved into place with ``os.replace``.
    """
    from tqdm.auto import tqdm

    scripts = list(scripts)
    ids = [s.video_id for s in scripts]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate video ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    for s in scripts:
        s.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out)
    rows = []
    for s in tqdm(scripts, desc="sample videos", unit="video", disable=not progress):
        t0 = time.perf_counter()
        mp4 = out / f"{s.video_id}.mp4"
        if not overwrite and is_up_to_date(s, out, font_path, font_index):
            rows.append(_row(load_ground_truth(mp4.with_suffix(".json")), mp4, "skipped",
                             time.perf_counter() - t0))
            continue
        gt = render_video(s, mp4, font_path=font_path, font_index=font_index)
        write_json_atomic(mp4.with_suffix(".json"), gt)
        rows.append(_row(gt, mp4, "generated", time.perf_counter() - t0))
    return rows


def leftover_temp_files(out_dir: str | Path) -> list[Path]:
    """Temp files a killed run may have left (safe to delete when no generator is running)."""
    return sorted(Path(out_dir).glob(f"{TMP_PREFIX}*"))


def remove_stale_temp_files(out_dir: str | Path) -> list[Path]:
    """Delete temp files whose writer process (pid in the name) is gone; return them."""
    removed = []
    for p in leftover_temp_files(out_dir):
        m = re.search(r"\.(\d+)\.[0-9a-f]{8}$", p.name)
        if m and not _pid_alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _print_table(rows: Sequence[dict[str, Any]]) -> None:
    cols = [("video_id", 22), ("category", 18), ("duration_s", 6), ("language", 5), ("n_cuts", 4),
            ("n_captions", 4), ("status", 9), ("seconds", 6)]
    heads = ["video_id", "category", "dur", "lang", "cuts", "caps", "status", "s"]
    print("  ".join(h.ljust(w) for h, (_, w) in zip(heads, cols, strict=True)))
    for r in rows:
        cells = []
        for key, w in cols:
            v = r[key]
            v = "-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
            pad = w - sum(1 for ch in v if ord(ch) > 0x2E80)  # CJK glyphs are double width
            cells.append(v + " " * max(0, pad - len(v)))
        print("  ".join(cells))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evads_kedro.sample_videos", description=__doc__.split("\n")[0])
    p.add_argument("out_dir", nargs="?", default="data/01_raw/videos", type=Path)
    p.add_argument("--overwrite", action="store_true", help="re-render even if up to date")
    p.add_argument("--only", nargs="+", metavar="VIDEO_ID", help="render only these sample ids")
    p.add_argument("--font", type=Path, default=DEFAULT_FONT_PATH, help="CJK font collection (.ttc)")
    p.add_argument("--font-index", type=int, default=DEFAULT_FONT_INDEX)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--long", action="store_true",
                   help="the two 40 s samples (LONG_SAMPLE_SCRIPTS) instead of the 8 short ones")
    a = p.parse_args(argv)
    pool = LONG_SAMPLE_SCRIPTS if a.long else SAMPLE_SCRIPTS
    scripts = pool
    if a.only:
        unknown = set(a.only) - {s.video_id for s in pool}
        if unknown:
            p.error(f"unknown video ids {sorted(unknown)}; known: {[s.video_id for s in pool]}")
        scripts = tuple(s for s in pool if s.video_id in a.only)
    t0 = time.perf_counter()
    rows = generate_sample_videos(a.out_dir, scripts, overwrite=a.overwrite, progress=not a.no_progress,
                                  font_path=a.font, font_index=a.font_index)
    _print_table(rows)
    n_gen = sum(r["status"] == "generated" for r in rows)
    print(f"{len(rows)} videos in {a.out_dir} ({n_gen} generated, {len(rows) - n_gen} up to date) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
