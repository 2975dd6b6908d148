from __future__ import annotations

import math

import numpy as np
import pytest

from planner.helpers import flat_distances
from xlcl.planner import OverlapTable, PlannerError, pair_features, subword_overlap
from xlcl.planner.features import _angular_distances, feature_names


def test_pair_features_of_japanese_receiver_and_chinese_donor() -> None:
    distances = flat_distances(["ja-JP", "zh-CN"])
    features = pair_features(["ja-JP", "zh-CN"], distances)
    names = feature_names(with_overlap=False)
    row = dict(zip(names, features[0, 1], strict=True))
    # Jpan vs Hans: both CJK, other script, family (Japonic / Sino-Tibetan), Joshi class 5
    assert row["same_script"] == 0.0
    assert row["receiver_cjk"] == row["donor_cjk"] == 1.0
    assert row["same_family"] == row["same_genus"] == 0.0
    assert row["receiver_resource"] == row["donor_resource"] == 1.0
    assert row["syntactic"] == distances.distance("syntactic", "ja-JP", "zh-CN")


def test_pair_features_are_directional_in_resource() -> None:
    # sw-KE (Joshi 2) receives from en-US (Joshi 5): both Latin, different families
    features = pair_features(["sw-KE", "en-US"], flat_distances(["sw-KE", "en-US"]))
    names = feature_names(with_overlap=False)
    row = dict(zip(names, features[0, 1], strict=True))
    assert (row["same_script"], row["receiver_cjk"], row["same_family"]) == (1.0, 0.0, 0.0)
    assert (row["receiver_resource"], row["donor_resource"]) == (0.4, 1.0)
    reverse = dict(zip(names, features[1, 0], strict=True))
    assert (reverse["receiver_resource"], reverse["donor_resource"]) == (1.0, 0.4)


def test_angular_distance_by_hand() -> None:
    vectors = np.array([[1.0, 0.0, np.nan], [0.0, 1.0, np.nan], [1.0, 1.0, 5.0], [np.nan] * 3])
    table = _angular_distances(vectors)
    assert table[0, 1] == pytest.approx(1.0)  # orthogonal: 2·(π/2)/π
    assert table[0, 2] == pytest.approx(0.5)  # 45° over the shared features: 2·(π/4)/π
    assert math.isnan(table[0, 3])  # nothing shared
    assert table[2, 2] == 0.0


def test_subword_overlap_is_jaccard_of_types() -> None:
    texts = {"en-US": ["a b c", "c d"], "de-DE": ["c d e"], "fr-FR": ["x"]}
    table = subword_overlap(texts, str.split, "whitespace")
    assert table.of("en-US", "de-DE") == pytest.approx(2 / 5)  # {c,d} / {a,b,c,d,e}
    assert table.of("de-DE", "en-US") == pytest.approx(2 / 5)
    assert table.of("en-US", "fr-FR") == 0.0
    assert OverlapTable.from_json(table.to_json()) == table


def test_overlap_table_names_a_missing_pair() -> None:
    table = OverlapTable("whitespace", {frozenset(("en-US", "de-DE")): 0.3})
    with pytest.raises(PlannerError, match="lacks the pair en-US/ja-JP"):
        table.of("en-US", "ja-JP")
    features = pair_features(["en-US", "de-DE"], flat_distances(["en-US", "de-DE"]), overlap=table)
    assert features[0, 1, -1] == 0.3


def test_uriel_distances_match_urielplus_and_name_imputed_locales() -> None:
    pytest.importorskip("urielplus")
    from xlcl.planner import uriel_distances

    with pytest.warns(UserWarning, match=r"phonological \(af-ZA\)"):
        table = uriel_distances(["en-US", "de-DE", "af-ZA"])
    # URIELPlus().new_distance("syntactic", "eng", "deu") and ("geographic", ...) give these
    assert table.distance("syntactic", "en-US", "de-DE") == pytest.approx(0.3582, abs=5e-5)
    assert table.distance("geographic", "en-US", "de-DE") == pytest.approx(0.0437, abs=5e-5)
    # Afrikaans has no phonological data: its pairs hold the mean of the others (one pair)
    known = table.distance("phonological", "en-US", "de-DE")
    assert table.distance("phonological", "af-ZA", "en-US") == pytest.approx(known)
    assert ("phonological", "en-US", "af-ZA") in table.imputed
