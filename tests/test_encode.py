import numpy as np
import pytest
from transformers import AutoTokenizer

from xlcl.data import Utterance
from xlcl.encode import IGNORE, bucketed_batches, collate, encode

LABELS = {"O": 0, "B-time": 1, "I-time": 2, "B-date": 3, "I-date": 4}


def utterance(words, tags, locale="en-US"):
    return Utterance("1", locale, "test", "alarm_set", tuple(words), tuple(tags))


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def test_only_the_first_subword_of_a_word_carries_its_label(tokenizer):
    words = ["wake", "me", "at", "five", "am"]
    tags = ["O", "O", "O", "B-time", "I-time"]
    split = encode([utterance(words, tags)], tokenizer, LABELS, max_length=64)
    ids, labels, firsts = split.input_ids[0], split.labels[0], split.first_token[0]
    word_ids = tokenizer(words, is_split_into_words=True).word_ids()
    expected_firsts = [word_ids.index(w) for w in range(len(words))]
    assert firsts.tolist() == expected_firsts
    assert labels[firsts].tolist() == [0, 0, 0, 1, 2]
    others = np.setdiff1d(np.arange(len(ids)), firsts)
    assert (labels[others] == IGNORE).all()  # later subwords and <s> </s>
    assert split.gold[0].tolist() == [0, 0, 0, 1, 2]


def test_truncated_words_have_no_first_subword(tokenizer):
    words = ["wake", "me", "up", "at", "five", "am", "this", "week"]
    tags = ["O"] * 6 + ["B-date", "I-date"]
    split = encode([utterance(words, tags)], tokenizer, LABELS, max_length=8)
    assert len(split.input_ids[0]) == 8
    firsts = split.first_token[0]
    assert firsts[0] == 1
    assert firsts[-1] == -1  # cut off: predicted as O at evaluation
    assert split.gold[0].tolist()[-2:] == [3, 4]  # gold keeps every word


def test_an_utterance_with_no_surviving_word_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="no word survives"):
        encode([utterance(["wake"], ["O"])], tokenizer, LABELS, max_length=2)


def test_collate_pads_to_the_longest_utterance():
    batch = collate([np.array([5, 6, 7]), np.array([8])], [np.array([0, 1, 2]), np.array([3])], 1)
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 1, 1]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.labels.tolist() == [[0, 1, 2], [3, IGNORE, IGNORE]]


def test_bucketed_batches_cover_every_index_once_and_group_lengths():
    lengths = np.array([5, 1, 9, 3, 7, 2, 8, 4, 6, 10])
    evaluation = bucketed_batches(lengths, 3, rng=None)
    assert [lengths[b].tolist() for b in evaluation] == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
    training = bucketed_batches(lengths, 3, rng=np.random.default_rng(0))
    assert sorted(np.concatenate(training).tolist()) == list(range(10))
    again = bucketed_batches(lengths, 3, rng=np.random.default_rng(0))
    assert [b.tolist() for b in training] == [b.tolist() for b in again]


def test_a_bucket_window_of_one_batch_gives_random_batches():
    lengths = np.arange(1, 41)
    shuffled = np.random.default_rng(3).permutation(40)
    random = bucketed_batches(lengths, 4, rng=np.random.default_rng(3), window=1)
    # the batches of the shuffled epoch, each sorted by length, in a shuffled order
    expected = {tuple(sorted(shuffled[i : i + 4].tolist())) for i in range(0, 40, 4)}
    assert {tuple(sorted(b.tolist())) for b in random} == expected
    bucketed = bucketed_batches(lengths, 4, rng=np.random.default_rng(3))
    # one window holds the whole epoch: each batch is 4 consecutive lengths
    assert all(b.max() - b.min() == 3 for b in (lengths[i] for i in bucketed))
