"""Compositional hard negatives from any caption, by rules: the same words bound differently, or one word changed.

A model that reads a caption as a bag of words cannot tell "a red circle left of a blue square" from "a blue circle
left of a red square". Minimal pairs teach the difference, but a user's captions come without them; these rules
make them from the captions themselves, in the spirit of NegCLIP and SugarCrepe, with small lexicons and no parser
(so they cost microseconds and need no model download). Each family changes a caption in one way:

- `swap_attributes`: two different words of one kind (colour, size, material), or two different places in the
  frame ("at the top left", "on the right"), exchange places ("a red circle and a blue square" → "a blue circle and
  a red square"); the bag of words is unchanged, the binding is not;
- `replace_attribute`: one attribute word becomes another of its kind ("red" → "green", "two" → "three");
- `swap_objects`: two different object nouns exchange places ("a red circle and a blue square" → "a red square and
  a blue circle");
- `swap_relation`: the two phrases around a spatial relation exchange places ("X left of Y" → "Y left of X"), or the
  relation becomes its opposite ("left" → "right", "above" → "below");
- `shuffle`: the words in another order.

`CaptionNegatives` draws up to `k` distinct negatives per caption from the families, deterministically from a key
(the dataset item's `sample_key`): the same caption and key give the same negatives in every process and on resume.
A negative never equals its caption; a caption with nothing a family can change gets fewer negatives, or none.
The lexicons are English; words outside them are left alone.
"""

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

ATTRIBUTE_KINDS = {
    "colour": (
        "red green blue yellow purple orange white black brown pink gray grey silver gold beige tan navy teal maroon"
    ).split(),
    "size": "small large big little tiny huge tall short long giant".split(),
    "material": "wooden metal plastic glass stone brick leather paper concrete ceramic".split(),
    "count": "one two three four five six seven eight nine ten".split(),
}
OBJECT_NOUNS = (
    # the demo world's shapes, then common nouns of image captions (COCO's categories and frequent caption nouns)
    "circle square triangle diamond star shape "
    "man woman person boy girl child kid people player dog cat horse sheep cow elephant bear zebra giraffe bird "
    "car bus truck train bicycle bike motorcycle airplane plane boat bench chair couch sofa bed table desk toilet "
    "tv laptop phone book clock vase bottle cup glass bowl plate fork knife spoon banana apple orange sandwich "
    "pizza cake donut umbrella bag backpack kite frisbee ball skateboard surfboard skis racket hat shirt jacket "
    "building house tree window door wall fence sign street road field grass water sky beach snow mountain"
).split()
# A relation word and its opposite; "left of"/"right of", "on top of" etc. are matched by their first word.
RELATION_OPPOSITES = {
    "left": "right",
    "right": "left",
    "above": "below",
    "below": "above",
    "over": "under",
    "under": "over",
    "top": "bottom",
    "bottom": "top",
    "in front": "behind",
    "behind": "in front",
    "inside": "outside",
    "outside": "inside",
    "before": "after",
    "after": "before",
    "on": "under",
}
FAMILIES = ("swap_attributes", "replace_attribute", "swap_objects", "swap_relation", "shuffle")
# Words of a place in the frame, after "at the", "on the" or "in the": "at the top left", "in the bottom corner".
PLACE_WORDS = frozenset("top bottom middle center centre left right upper lower corner side front back".split())
# Words a noun phrase may start with or hold before its noun.
_DETERMINERS = {"a", "an", "the", "this", "that", "some", "his", "her", "its", "their", *ATTRIBUTE_KINDS["count"]}
_ATTRIBUTES = {word for words in ATTRIBUTE_KINDS.values() for word in words}
_KIND_OF = {word: kind for kind, words in ATTRIBUTE_KINDS.items() for word in words}
_WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*|[^\sA-Za-z]+")


def _words(caption: str) -> list[str]:
    return _WORD.findall(caption)


def _join(words: Sequence[str]) -> str:
    text = " ".join(words)
    return re.sub(r" ([,.;:!?])", r"\1", text)


def _positions(words: list[str], vocabulary) -> list[int]:
    return [index for index, word in enumerate(words) if word.lower() in vocabulary]


def _swap(words: list[str], first: int, second: int) -> list[str]:
    swapped = list(words)
    swapped[first], swapped[second] = words[second], words[first]
    return swapped


def _place_spans(words: list[str]) -> list[tuple[int, int]]:
    """`(start, end)` of the place words of every "at/on/in the <place words>" phrase."""
    spans, index = [], 0
    while index + 2 < len(words):
        if words[index].lower() in {"at", "on", "in"} and words[index + 1].lower() == "the":
            end = index + 2
            while end < len(words) and words[end].lower() in PLACE_WORDS:
                end += 1
            if end > index + 2:
                spans.append((index + 2, end))
                index = end
                continue
        index += 1
    return spans


def _swap_spans(words: list[str], first: tuple[int, int], second: tuple[int, int]) -> list[str]:
    (a, b), (c, d) = sorted((first, second))
    return words[:a] + words[c:d] + words[b:c] + words[a:b] + words[d:]


def swap_attributes(words: list[str], rng: random.Random) -> list[str] | None:
    """Two different attribute words of one kind, or two different places in the frame, exchange places (the bag of
    words is kept). The kind is drawn first, among those with something to swap."""
    candidates = {}
    for kind in ("colour", "size", "material"):
        places = _positions(words, ATTRIBUTE_KINDS[kind])
        pairs = [(a, b) for a in places for b in places if a < b and words[a].lower() != words[b].lower()]
        if pairs:
            candidates[kind] = [lambda pair=pair: _swap(words, *pair) for pair in pairs]
    spans = _place_spans(words)
    span_pairs = [(x, y) for x in spans for y in spans if x < y and words[x[0] : x[1]] != words[y[0] : y[1]]]
    if span_pairs:
        candidates["place"] = [lambda pair=pair: _swap_spans(words, *pair) for pair in span_pairs]
    if not candidates:
        return None
    return rng.choice(candidates[rng.choice(sorted(candidates))])()


def replace_attribute(words: list[str], rng: random.Random) -> list[str] | None:
    """One attribute word becomes another of its kind that the caption does not use."""
    places = _positions(words, _ATTRIBUTES)
    rng.shuffle(places)
    used = {word.lower() for word in words}
    for place in places:
        others = [word for word in ATTRIBUTE_KINDS[_KIND_OF[words[place].lower()]] if word not in used]
        if others:
            replaced = list(words)
            replaced[place] = rng.choice(others)
            return replaced
    return None


def swap_objects(words: list[str], rng: random.Random) -> list[str] | None:
    """Two different object nouns exchange places."""
    places = _positions(words, OBJECT_NOUNS)
    pairs = [(a, b) for a in places for b in places if a < b and words[a].lower() != words[b].lower()]
    if not pairs:
        return None
    return _swap(words, *rng.choice(pairs))


def _phrase_before(words: list[str], end: int) -> int | None:
    """Start of the noun phrase ending at `end - 1` ([determiner] [attributes] noun), or None."""
    if end < 1 or words[end - 1].lower() not in OBJECT_NOUNS:
        return None
    start = end - 1
    while start > 0 and words[start - 1].lower() in _DETERMINERS | _ATTRIBUTES:
        start -= 1
    return start


def _phrase_after(words: list[str], start: int) -> int | None:
    """End (exclusive) of the noun phrase starting at `start`, or None."""
    end = start
    while end < len(words) and words[end].lower() in _DETERMINERS | _ATTRIBUTES:
        end += 1
    return end + 1 if end < len(words) and words[end].lower() in OBJECT_NOUNS else None


def _relations(words: list[str]) -> list[tuple[int, int]]:
    """`(start, end)` of every relation phrase: a relation word, with "of"/"to" after it and "in front" as one."""
    found, index = [], 0
    while index < len(words):
        lowered = words[index].lower()
        length = 0
        if lowered == "in" and index + 1 < len(words) and words[index + 1].lower() == "front":
            length = 2
        elif lowered in RELATION_OPPOSITES:
            length = 1
        if length:
            end = index + length
            while end < len(words) and words[end].lower() in {"of", "to"}:
                end += 1
            found.append((index, end))
            index = end
        else:
            index += 1
    return found


def swap_relation(words: list[str], rng: random.Random) -> list[str] | None:
    """The noun phrases around a relation exchange places, or the relation becomes its opposite."""
    options = []
    for start, end in _relations(words):
        before, after = _phrase_before(words, start), _phrase_after(words, end)
        if before is not None and after is not None and words[before:start] != words[end:after]:
            options.append(words[:before] + words[end:after] + words[start:end] + words[before:start] + words[after:])
        relation = " ".join(words[start : start + (2 if words[start].lower() == "in" else 1)]).lower()
        opposite = RELATION_OPPOSITES[relation].split()
        options.append(words[:start] + opposite + words[start + len(relation.split()) :])
    return rng.choice(options) if options else None


def shuffle(words: list[str], rng: random.Random) -> list[str] | None:
    """The words in another order (punctuation kept where it is)."""
    places = [index for index, word in enumerate(words) if word[0].isalpha()]
    if len({words[place].lower() for place in places}) < 2:
        return None
    order = list(places)
    while [words[place] for place in order] == [words[place] for place in places]:
        rng.shuffle(order)
    shuffled = list(words)
    for place, source in zip(places, order):
        shuffled[place] = words[source]
    return shuffled


_FAMILY_FUNCTIONS: dict[str, Callable[[list[str], random.Random], list[str] | None]] = {
    "swap_attributes": swap_attributes,
    "replace_attribute": replace_attribute,
    "swap_objects": swap_objects,
    "swap_relation": swap_relation,
    "shuffle": shuffle,
}


@dataclass(frozen=True)
class CaptionNegatives:
    """Draws up to `k` distinct hard-negative captions per caption (see the module docstring).

    Args:
        k (`int`): negatives per caption, at most.
        families (`tuple[str, ...]`): the rule families to draw from (`FAMILIES` by default); each negative picks a
            family at random among those that can change the caption.
        seed (`int`): mixed into every draw with the caption's key.

    Raises:
        ValueError: for `k < 1` or an unknown family.
    """

    k: int
    families: tuple[str, ...] = FAMILIES
    seed: int = 0

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"CaptionNegatives: k must be at least 1, got {self.k}.")
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown or not self.families:
            raise ValueError(f"CaptionNegatives: unknown families {unknown or '(none given)'}; known: {FAMILIES}.")

    def __call__(self, caption: str, key: int | str = 0) -> list[str]:
        """Up to `k` distinct negatives of `caption`, none equal to it (compared without case), the same for the
        same `(caption, key, seed)`."""
        rng = random.Random(f"{self.seed}:{key}:{caption}")
        words = _words(caption)
        negatives, seen, families = [], {caption.strip().lower()}, list(self.families)
        attempts = 0
        while families and len(negatives) < self.k and attempts < 4 * self.k + 8:
            attempts += 1
            family = rng.choice(families)
            changed = _FAMILY_FUNCTIONS[family](words, rng)
            if changed is None:
                families.remove(family)  # nothing this family can change in this caption
                continue
            text = _join(changed)
            if text.lower() not in seen:
                seen.add(text.lower())
                negatives.append(text)
        return negatives


__all__ = [
    "ATTRIBUTE_KINDS",
    "FAMILIES",
    "OBJECT_NOUNS",
    "RELATION_OPPOSITES",
    "CaptionNegatives",
    "replace_attribute",
    "shuffle",
    "swap_attributes",
    "swap_objects",
    "swap_relation",
]
