"""Which "left" and "right" of a caption name a side (`mamo_hf.data.sides`): the flip mirrors only those, not the verb
"left" nor "right next to"."""

import pytest

from mamo_hf.data.sides import names_a_side
from mamo_hf.data.transforms import mirror_caption


@pytest.mark.parametrize(
    "text, expected",
    [
        ("the man left the room", "the man left the room"),
        ("a cat left alone on a couch", "a cat left alone on a couch"),
        ("a bag left behind at the station", "a bag left behind at the station"),
        ("the bus has left", "the bus has left"),
        ("a sandwich was left on the table", "a sandwich was left on the table"),
        ("there is nothing left of the cake", "there is nothing left of the cake"),
        ("he's left his bike by the door", "he's left his bike by the door"),
        ("a dog standing right next to a car", "a dog standing right next to a car"),
        ("a man on the left", "a man on the right"),
        ("a red circle left of a blue square", "a red circle right of a blue square"),
        ("a cup to the left of a plate", "a cup to the right of a plate"),
        ("the left side of a bus", "the right side of a bus"),
        ("a glove on his left hand", "a glove on his right hand"),
        ("a large red circle at the top left", "a large red circle at the top right"),
        ("the left one is red", "the right one is red"),
        ("a car turning left at the corner", "a car turning right at the corner"),
        ("a bag was left on the left side of a bench", "a bag was left on the right side of a bench"),
        ("a circle is left of a square", "a circle is right of a square"),
    ],
)
def test_mirror_caption_mirrors_sides_only_not_the_verb_left_nor_right_next_to(text, expected):
    assert mirror_caption(text) == expected


@pytest.mark.parametrize(
    "previous, word, following, names",
    [
        ("has", "left", "of", False),  # after an auxiliary of the perfect or a pronoun: the verb, whatever follows
        ("nothing", "left", "of", False),
        ("the", "left", None, True),  # after a determiner, a place word, "from" or a verb of direction: a side
        ("top", "right", "and", True),
        ("turning", "left", "at", True),
        ("is", "left", "of", True),  # before "of" or a part of a thing: a side
        ("his", "right", "hand", True),
        ("standing", "right", "next", False),  # "right" before a preposition or an adverb: an intensifier
        ("all", "right", None, False),
        (None, "Right", "there", False),
        ("was", "left", "on", False),  # "left" after "is"/"was", before an object or a preposition, or at the end
        ("bag", "left", "behind", False),
        ("man", "left", None, False),
        ("circle", "left", "a", False),
        ("circle", "right", "a", True),  # anything else names a side
        ("a", "left", "-over", False),  # hyphenated: every compound names a side but "left-over"
        ("a", "left", "-hand", True),
        ("bright", "right", "-hand", True),
    ],
)
def test_names_a_side_follows_its_rules_in_order(previous, word, following, names):
    assert names_a_side(word, previous, following) is names
