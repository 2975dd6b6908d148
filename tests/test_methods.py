import pytest

from xlcl.methods import method, preset_schedule
from xlcl.schedules import INDEPENDENT, JOINT, SEQUENTIAL


@pytest.mark.parametrize(
    ("name", "rank", "schedule", "label"),
    [
        ("multi", None, JOINT, "MULTI"),
        ("multi", 32, JOINT, "MULTI LoRA 32"),
        ("mono", None, INDEPENDENT, "MONO"),
        ("vanilla", None, SEQUENTIAL, "VANILLA"),
        ("shared-lora", 64, SEQUENTIAL, "SHARED LoRA 64"),
        ("nonshared-lora", 256, INDEPENDENT, "NON-SHARED LoRA 256"),
    ],
)
def test_presets_place_the_paper_methods_on_the_two_axes(name, rank, schedule, label):
    spec = method(name, rank)
    assert spec.schedule is schedule
    assert preset_schedule(name) is schedule  # whatever the rank
    assert spec.lora is (rank is not None)
    assert spec.label == label


def test_unknown_method_suggests_the_closest_name():
    with pytest.raises(ValueError, match="did you mean 'shared-lora'"):
        method("shared_lora", 32)
    with pytest.raises(ValueError, match="did you mean 'mono'"):
        preset_schedule("mnoo")


@pytest.mark.parametrize(
    ("name", "rank", "message"),
    [
        ("shared-lora", None, "needs a rank"),
        ("nonshared-lora", None, "needs a rank"),
        ("vanilla", 32, "takes no rank"),
        ("mono", 8, "takes no rank"),
        ("multi", 0, "positive"),
    ],
)
def test_rank_is_checked_against_the_method(name, rank, message):
    with pytest.raises(ValueError, match=message):
        method(name, rank)
