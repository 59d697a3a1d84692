"""The family that changes where things are: a relation becomes its opposite, as a whole ("on top of" → "under"),
a side or a place in the frame becomes the other one, or the phrases around a directed relation exchange places."""

from .edits import Choices, Edit, Words
from .lexicon import AFTER_VERB_ONLY, PLACE_OPPOSITES
from .nouns import BACKDROPS, SURFACES, SWAPPABLE
from .reading import Caption, Relation

_SIDES = {"left": "right", "right": "left"}


def _object_of(caption: Caption, relation: Relation) -> int | None:
    """The phrase right after a relation (its object), if any."""
    return caption.phrase_starting(relation.end)


def _inversions(caption: Caption, relation: Relation) -> list[Words]:
    """The caption with the relation replaced by each of its opposites; only before an object that is not a backdrop
    ("under the sky"), "on" only before a surface, "into" and "out of" only after a verb, none after "from"."""
    target = _object_of(caption, relation)
    if not relation.opposites or target is None or caption.lower[relation.start - 1 : relation.start] == ("from",):
        return []
    unit, noun = caption.lower[relation.start : relation.end], caption.phrases[target].noun
    if noun is not None and noun.singular in BACKDROPS:
        return []
    if unit in AFTER_VERB_ONLY and caption.tags[relation.start - 1 : relation.start] != ("VERB",):
        return []
    if unit == ("on",) and (noun is None or caption.phrases[target].compound or noun.singular not in SURFACES):
        return []
    words = list(caption.words)
    return [words[: relation.start] + list(opposite) + words[relation.end :] for opposite in relation.opposites]


def _exchange(caption: Caption, relation: Relation) -> list[Words]:
    """The two phrases around a directed relation exchanged ("a red circle left of a blue square" → "a blue square
    left of a red circle"), where both name things of one category that may exchange places, and differ."""
    first, second = caption.phrase_ending(relation.start), _object_of(caption, relation)
    if not relation.opposites or first is None or second is None:
        return []
    a, b = caption.phrases[first], caption.phrases[second]
    if (
        a.category not in SWAPPABLE
        or a.category != b.category
        or caption.lower[a.start : a.end] == caption.lower[b.start : b.end]
    ):
        return []
    words = list(caption.words)
    return [
        words[: a.start] + words[b.start : b.end] + words[a.end : b.start] + words[a.start : a.end] + words[b.end :]
    ]


def _place_flips(caption: Caption) -> list[list[Edit]]:
    """Each side word and each place word with an opposite, inside a place in the frame, turned into it."""
    flips = [[{index: _SIDES[caption.lower[index]]}] for index in caption.sides]
    for start, end in caption.places:
        for index in range(start, end):
            opposite = PLACE_OPPOSITES.get(caption.lower[index]) or _SIDES.get(caption.lower[index])
            if opposite:
                flips.append([{index: opposite}])
    return flips


def swap_relation_choices(caption: Caption) -> Choices:
    """`swap_relation`: one group of alternatives per relation (its opposites, the exchange of the phrases around
    it), per side word and per place word."""
    choices = [_inversions(caption, relation) + _exchange(caption, relation) for relation in caption.relations]
    return [choice for choice in choices + _place_flips(caption) if choice]
