"""Training orders: the paper's five (Table 3), seeded random ones and custom lists."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from xlcl.data.locales import LOCALES, require_locales


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Table 3 of the paper. 1 follows XLM-R's pre-training data size (high first), 2-4 are
# random, 5 puts the most destructive locales last.
ORDERS: Mapping[int, tuple[str, ...]] = MappingProxyType(
    {
        1: _words(
            "en-US ru-RU id-ID vi-VN fa-IR th-TH ja-JP de-DE ro-RO hu-HU fr-FR fi-FI ko-KR "
            "es-ES pt-PT nb-NO el-GR zh-CN da-DK pl-PL he-IL it-IT nl-NL ar-SA tr-TR hi-IN "
            "zh-TW ta-IN sv-SE sl-SL ca-ES ka-GE lv-LV ms-MY bn-BD ml-IN az-AZ ur-PK hy-AM "
            "sq-AL te-IN kn-IN is-IS tl-PH mn-MN my-MM sw-KE km-KH af-ZA am-ET cy-GB jv-ID"
        ),
        2: _words(
            "tr-TR ro-RO ur-PK es-ES hi-IN pl-PL hy-AM sv-SE sl-SL ta-IN te-IN ml-IN id-ID "
            "ka-GE el-GR ko-KR de-DE fa-IR ms-MY ca-ES az-AZ nl-NL pt-PT fr-FR hu-HU sw-KE "
            "mn-MN he-IL zh-CN fi-FI ru-RU is-IS cy-GB ja-JP sq-AL vi-VN th-TH jv-ID it-IT "
            "my-MM kn-IN lv-LV am-ET nb-NO ar-SA en-US af-ZA zh-TW bn-BD da-DK km-KH tl-PH"
        ),
        3: _words(
            "sv-SE nl-NL fi-FI kn-IN hu-HU ms-MY es-ES my-MM is-IS ko-KR af-ZA vi-VN bn-BD "
            "tr-TR tl-PH lv-LV ru-RU fr-FR en-US ro-RO am-ET he-IL hi-IN ja-JP te-IN id-ID "
            "ta-IN it-IT jv-ID nb-NO ka-GE sq-AL ca-ES az-AZ zh-TW fa-IR mn-MN zh-CN de-DE "
            "da-DK ml-IN sw-KE sl-SL km-KH ar-SA pt-PT cy-GB ur-PK hy-AM el-GR pl-PL th-TH"
        ),
        4: _words(
            "nb-NO ta-IN th-TH fi-FI ru-RU af-ZA vi-VN ko-KR ro-RO km-KH is-IS ms-MY sl-SL "
            "en-US hi-IN he-IL bn-BD pt-PT fa-IR sv-SE am-ET kn-IN az-AZ tl-PH ar-SA nl-NL "
            "cy-GB hy-AM it-IT de-DE da-DK te-IN hu-HU lv-LV zh-CN mn-MN es-ES ca-ES pl-PL "
            "fr-FR ja-JP ka-GE sw-KE id-ID zh-TW jv-ID sq-AL el-GR tr-TR my-MM ml-IN ur-PK"
        ),
        5: _words(
            "mn-MN ml-IN is-IS fa-IR az-AZ pl-PL de-DE ko-KR ar-SA sw-KE jv-ID sq-AL tl-PH "
            "ru-RU lv-LV fr-FR ro-RO ka-GE cy-GB tr-TR he-IL sl-SL af-ZA nl-NL my-MM hu-HU "
            "hi-IN vi-VN it-IT pt-PT da-DK ca-ES am-ET el-GR ta-IN id-ID te-IN sv-SE bn-BD "
            "ur-PK en-US kn-IN ms-MY nb-NO es-ES fi-FI zh-TW zh-CN ja-JP th-TH km-KH hy-AM"
        ),
    }
)

_RANDOM = "random:"


def resolve_order(
    spec: int | str | Sequence[str], locales: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The training order that ``spec`` names.

    - ``1``..``5`` (int or digit string): the paper's order; with ``locales``, restricted to
      them in the same relative order.
    - ``"random:SEED"``: a permutation of all 52 locales (or of ``locales``), drawn with
      ``random.Random(SEED)`` from the sorted locales, so the same set and seed give the same
      order however the set is listed.
    - a list of locales: a custom order, checked for unknown and repeated locales; with
      ``locales``, every entry must be one of them.
    """
    pool = require_locales(LOCALES if locales is None else locales)
    if isinstance(spec, str) and spec.startswith(_RANDOM):
        seed_text = spec.removeprefix(_RANDOM)
        if not seed_text.lstrip("-").isdigit():
            raise ValueError(f"random order needs an integer seed, as in 'random:3'; got {spec!r}")
        order = sorted(pool)
        random.Random(int(seed_text)).shuffle(order)
        return tuple(order)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        number = int(spec)
        if number not in ORDERS:
            raise ValueError(f"built-in orders are {', '.join(map(str, ORDERS))}; got {number}")
        return tuple(locale for locale in ORDERS[number] if locale in pool)
    if isinstance(spec, str):
        raise ValueError(f"order must be 1-5, 'random:SEED' or a list of locales; got {spec!r}")
    custom = require_locales(spec)
    outside = [locale for locale in custom if locale not in pool]
    if outside:
        raise ValueError(f"order names locales not among those given: {', '.join(outside)}")
    return custom
