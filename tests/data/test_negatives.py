"""Compositional hard negatives from any caption (`mamo_hf.data.negatives`): each family changes a caption in its own
way, by rules and lexicons, deterministically."""

import os
import random
from collections import Counter

import pytest
from helpers import CAPTION

from mamo_hf.data import CaptionNegatives, DemoCaptionDataset, demo_tokenizer
from mamo_hf.data.negatives import (
    ATTRIBUTE_KINDS,
    DEFAULT_FAMILIES,
    FAMILIES,
    replace_action,
    replace_attribute,
    replace_count,
    replace_object,
    shuffle,
    swap_attributes,
    swap_objects,
    swap_relation,
)


def words(text):
    return text.split()


@pytest.mark.parametrize(
    "family, expected",
    [
        (
            swap_attributes,
            {"a large blue circle left of a small red square", "a small red circle left of a large blue square"},
        ),
        (swap_objects, {"a large red square left of a small blue circle"}),
        (
            swap_relation,
            {"a small blue square left of a large red circle", "a large red circle right of a small blue square"},
        ),
    ],
)
def test_each_family_changes_the_caption_in_its_own_way(family, expected):
    produced = {" ".join(family(words(CAPTION), random.Random(seed))) for seed in range(30)}
    assert produced == expected


KIND_OF = {word: kind for kind, words in ATTRIBUTE_KINDS.items() for word in words}


def test_attribute_replacement_stays_within_the_kind_and_shuffle_keeps_the_words():
    for seed in range(30):
        replaced = replace_attribute(words(CAPTION), random.Random(seed))
        changed = [(old, new) for old, new in zip(words(CAPTION), replaced) if old != new]
        assert len(changed) == 1
        old, new = changed[0]
        assert KIND_OF[old] == KIND_OF[new]
        if KIND_OF[old] == "colour":
            assert new not in CAPTION.split()
        else:  # a size becomes its opposite, even where another phrase has it
            assert {old, new} == {"large", "small"}
        shuffled = shuffle(words(CAPTION), random.Random(seed))
        assert Counter(shuffled) == Counter(words(CAPTION)) and shuffled != words(CAPTION)


def test_negatives_are_deterministic_distinct_and_never_the_caption():
    generator = CaptionNegatives(4, seed=3)
    for key in range(20):
        negatives = generator(CAPTION, key)
        assert negatives == generator(CAPTION, key)  # same caption, key and seed
        assert len(negatives) == 4 and len(set(negatives)) == 4 and CAPTION not in negatives
    assert any(generator(CAPTION, key) != generator(CAPTION, 0) for key in range(1, 20))
    assert generator("A Large red circle.", 1)  # case and punctuation are no obstacle


def test_captions_with_nothing_to_change_get_none_or_fewer():
    assert CaptionNegatives(3)("hello", 0) == []  # one word: nothing any family can change
    assert CaptionNegatives(3, families=("swap_attributes", "swap_objects"))("a photo of the sky", 0) == []
    only_shuffle = CaptionNegatives(5, families=("shuffle",))("a red b", 0)
    assert 0 < len(only_shuffle) <= 5 and "a red b" not in only_shuffle
    with pytest.raises(ValueError, match="unknown families"):
        CaptionNegatives(2, families=("swap_colours",))
    with pytest.raises(ValueError, match="at least 1"):
        CaptionNegatives(0)


def test_real_english_captions_get_negatives_from_every_family():
    caption = "A man riding a brown horse in front of two white dogs on the beach"
    generator = CaptionNegatives(1)
    for family in FAMILIES:
        (negative,) = CaptionNegatives(1, families=(family,))(caption, 0)
        assert negative.lower() != caption.lower() and negative[0].isupper()
    assert generator(caption, 0) != [caption]


def test_shuffles_are_opt_in():
    assert "shuffle" in FAMILIES and "shuffle" not in DEFAULT_FAMILIES
    assert set(DEFAULT_FAMILIES) | {"shuffle"} == set(FAMILIES)
    assert CaptionNegatives(3).families == DEFAULT_FAMILIES
    caption = "the man and the woman"  # nothing the default families may change: the swap would be true
    assert CaptionNegatives(3)(caption, 0) == []
    assert Counter(CaptionNegatives(1, families=("shuffle",))(caption, 0)[0].split()) == Counter(caption.split())


def test_demo_negatives_use_only_the_demo_vocabulary_and_still_teach_binding():
    tokenizer = demo_tokenizer()
    vocabulary = set(tokenizer.get_vocab())
    dataset = DemoCaptionDataset(200, seed=5, image_size=16, templates=("list", "relation"))
    generator = CaptionNegatives(3)
    for index in range(200):
        caption = dataset[index]["caption"]
        negatives = generator(caption, index)
        assert len(negatives) == 3, caption
        for negative in negatives:
            tokens = tokenizer.tokenize(negative)
            assert tokenizer.unk_token not in tokens and set(tokens) <= vocabulary, negative
    listed = "there is a large red circle at the top left and a small blue square at the bottom right".split()
    expected = {
        "there is a large blue circle at the top left and a small red square at the bottom right",  # colours
        "there is a small red circle at the top left and a large blue square at the bottom right",  # sizes
        "there is a large red circle at the bottom right and a small blue square at the top left",  # places
    }
    assert {" ".join(swap_attributes(listed, random.Random(seed))) for seed in range(40)} == expected
    inverted = {" ".join(swap_relation(listed, random.Random(seed))) for seed in range(40)}
    assert "there is a large red circle at the bottom left and a small blue square at the bottom right" in inverted
    assert "there is a large red circle at the top right and a small blue square at the bottom right" in inverted
    above = "a small green triangle above a large yellow diamond".split()
    assert "a small green triangle below a large yellow diamond" in {
        " ".join(swap_relation(above, random.Random(seed))) for seed in range(20)
    }


def test_places_in_the_frame_are_swapped_as_whole_phrases():
    caption = "there is a large red circle at the top left and a small blue square at the bottom".split()
    produced = {" ".join(swap_attributes(caption, random.Random(seed))) for seed in range(40)}
    assert "there is a large red circle at the bottom and a small blue square at the top left" in produced
    assert all(Counter(text.split()) == Counter(caption) for text in produced)


def outputs(family, caption, seeds=40):
    """Every negative `family` draws from `caption` over `seeds` draws."""
    drawn = (family(caption.split(), random.Random(seed)) for seed in range(seeds))
    return {" ".join(words) for words in drawn if words is not None}


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("a cat on top of a car", {"a cat under a car", "a cat beneath a car", "a cat below a car"}),
        ("a dog in front of a house", {"a dog behind a house"}),
        ("a man standing behind a counter", {"a man standing in front of a counter"}),
        ("a lamp to the left of a bed", {"a lamp to the right of a bed"}),
        ("a cat at the top of the stairs", {"a cat at the bottom of the stairs"}),
        ("a bike at the bottom of a hill", {"a bike at the top of a hill", "a bike on top of a hill"}),
        ("a ball under a chair", {"a ball on top of a chair"}),
        ("a cat inside a basket", {"a cat outside a basket"}),
        ("a woman getting out of a taxi", {"a woman getting into a taxi"}),
        ("a painting above a couch", {"a painting below a couch"}),
        ("a dog behind a cat", {"a dog in front of a cat", "a cat behind a dog"}),
        ("a dog on the left", {"a dog on the right"}),
    ],
)
def test_relations_are_inverted_as_whole_phrases(caption, expected):
    assert outputs(swap_relation, caption) == expected


@pytest.mark.parametrize(
    "caption",
    [
        "a dog next to a cat",
        "a man and a woman",
        "a red and white bus",
        "a tree near a house",
        "a chair beside a table",
        "a cat across from a dog",
        "a red car next to a blue car",
        "a small dog and a large dog",
        "two buses parked side by side",
        "the man left the room",
        "a dog with a man",
    ],
)
def test_symmetric_relations_coordinations_and_the_verb_left_are_never_swapped(caption):
    for key in range(30):
        for negative in CaptionNegatives(5)(caption, key):
            assert Counter(negative.split()) != Counter(caption.split()), negative
            assert "right" not in negative.split()


def test_synonyms_are_never_used_and_objects_stay_within_their_kind():
    caption = "a little dog lying on a couch next to a bike"
    negatives = {negative for key in range(40) for negative in CaptionNegatives(5)(caption, key)}
    synonyms = {"small", "tiny", "sofa", "bicycle", "puppy"}
    assert negatives and not any(synonyms & set(negative.split()) for negative in negatives)
    assert outputs(replace_object, "a man riding a bike") == {
        "a woman riding a bike",
        "a man riding a motorcycle",
        "a man riding a scooter",
    }
    assert "a man riding a cow" not in outputs(replace_object, "a man riding a horse")  # a horse is ridden
    assert outputs(replace_object, "a flock of sheep") == set()  # a flock belongs to sheep and birds
    assert outputs(replace_object, "a plane on a runway") == {"a plane on a runway".replace("plane", "helicopter")}
    assert outputs(replace_attribute, "a big grey cat") == {
        "a small grey cat",
        "a big brown cat",
        "a big white cat",
        "a big black cat",
    }


def test_counts_change_with_the_number_of_their_noun_and_verb():
    assert outputs(replace_count, "one dog is sleeping on the couch") == {"two dogs are sleeping on the couch"}
    assert outputs(replace_count, "two cats are sitting in the window") == {
        "one cat is sitting in the window",
        "three cats are sitting in the window",
    }
    assert outputs(replace_count, "three children on a bench") == {
        "two children on a bench",
        "four children on a bench",
    }
    assert outputs(replace_count, "a fence between two fields") == {"a fence between three fields"}
    assert outputs(replace_count, "one of the dogs") == set()


def test_words_of_two_lexicons_are_read_by_their_place():
    fruit = "an orange and a banana on a plate"
    assert replace_attribute(fruit.split(), random.Random(0)) is None  # no colour in it
    assert "an apple and a banana on a plate" in outputs(replace_object, fruit)
    assert "a white cat on a mat" in outputs(replace_attribute, "an orange cat on a mat")  # and "an" agrees
    assert outputs(replace_attribute, "a glass of water") == set()
    assert outputs(replace_object, "a glass of water") == {"a bottle of water"}
    assert outputs(replace_attribute, "a glass table") == {"a wooden table", "a metal table", "a plastic table"}
    assert outputs(replace_attribute, "an orange juice") == set()


def test_actions_are_replaced_only_by_actions_that_cannot_happen_with_them():
    assert outputs(replace_action, "a man riding a horse") == {"a man feeding a horse", "a man leading a horse"}
    assert outputs(replace_action, "a man feeding a horse") == {"a man riding a horse"}
    assert outputs(replace_action, "a man feeding a goat") == set()  # petting could go with feeding
    assert outputs(replace_action, "a woman riding a bike") == {"a woman pushing a bike"}
    assert outputs(replace_action, "a dog sitting on a couch") == {
        "a dog standing on a couch",
        "a dog lying on a couch",
    }
    assert outputs(replace_action, "a vase sitting on a table") == set()  # a vase that sits on a table also stands
    assert outputs(replace_action, "a man holding an umbrella") == set()
    assert outputs(replace_action, "a man sitting at a desk") == {"a man standing at a desk"}


def test_things_of_one_category_exchange_places_only_where_it_changes_the_caption():
    assert outputs(swap_objects, "a black dog and two white cats") == {"a black cat and two white dogs"}
    assert outputs(swap_objects, "a dog chasing a cat") == {"a cat chasing a dog"}
    assert outputs(swap_objects, "a dog and a cat") == set()
    assert outputs(swap_objects, "a man in a red shirt") == set()
    assert outputs(swap_attributes, "an open laptop and a closed book") == {"a closed laptop and an open book"}
    assert outputs(swap_attributes, "a brown dog with a red ball") == set()  # a red dog is no dog


def test_negatives_do_not_depend_on_the_process_hash_seed():
    """Workers and ranks are separate processes with their own string hashing: no draw may follow a set's order."""
    import subprocess
    import sys

    script = (
        "from mamo_hf.data.negatives import CaptionNegatives, FAMILIES\n"
        "captions = ['a red car next to a blue bus on the left', 'two black dogs chasing a white cat', "
        "'a large red circle left of a small blue square', 'a man riding a horse in front of a wooden barn']\n"
        "print([CaptionNegatives(6, FAMILIES, seed=1)(caption, key) for caption in captions for key in range(5)])\n"
    )
    drawn = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(drawn) == 1
