"""Families that change attributes: exchange them between noun phrases, replace one, change a count."""

from itertools import combinations

from .edits import Choices, Edit, category_of, fits, says_something_else
from .lexicon import (
    BODY_SIZES,
    COLOUR_PALETTES,
    COUNTS,
    IDIOM_AFTER,
    IDIOM_BEFORE,
    KIND_OF,
    LENGTHY_NOUNS,
    MATERIAL_PALETTES,
    NEAR,
    OPPOSITES,
    UNSWAPPABLE,
)
from .nouns import ANIMATE, MASS_NOUNS, PLURAL_ONLY, SAME_PLURAL, YOUTHFUL
from .reading import Attribute, Caption, Phrase

_AGREEMENT = {"is": "are", "are": "is", "was": "were", "were": "was", "has": "have", "have": "has"}


def _attribute_swaps(caption: Caption) -> dict[str, list[Edit]]:
    """Exchanges of two different attributes of one kind between two phrases, by kind, where both still fit their
    nouns and the caption then says something else."""
    swaps = {}
    modifiers = [attribute for attribute in caption.attributes if attribute.role == "modifier"]
    for first, second in combinations(modifiers, 2):
        a, b = caption.lower[first.index], caption.lower[second.index]
        if first.kind != second.kind or first.phrase == second.phrase or b in NEAR[a] or {a, b} & UNSWAPPABLE:
            continue
        if not (
            fits(b, first.kind, category_of(caption, first.phrase))
            and fits(a, first.kind, category_of(caption, second.phrase))
        ):
            continue
        replacements = {first.index: b, second.index: a}
        if says_something_else(caption, first.phrase, second.phrase, replacements):
            swaps.setdefault(first.kind, []).append(replacements)
    return swaps


def _count_swaps(caption: Caption) -> list[Edit]:
    """Exchanges of two different counts of two or more (no noun changes number): "two dogs and three cats"."""
    counted = [phrase for phrase in caption.phrases if phrase.count is not None]
    swaps = []
    for first, second in combinations(counted, 2):
        a, b = caption.lower[first.count], caption.lower[second.count]
        if a != b and "one" not in (a, b):
            swaps.append({first.count: b, second.count: a})
    return swaps


def _owner_before(caption: Caption, index: int) -> tuple[str, ...]:
    """The words of the last phrase that ends before word `index` (none if there is no such phrase)."""
    owners = [phrase for phrase in caption.phrases if phrase.end <= index]
    return caption.lower[owners[-1].start : owners[-1].end] if owners else ()


def _place_swaps(caption: Caption) -> list[Edit]:
    """Exchanges of two different places in the frame of two different phrases ("at the top left" ↔ "at the
    bottom")."""
    swaps, words = [], list(caption.words)
    for (a, b), (c, d) in combinations(caption.places, 2):
        first, second = _owner_before(caption, a), _owner_before(caption, c)
        owners_differ = not first or not second or first != second  # an unknown owner may differ
        if caption.lower[a:b] != caption.lower[c:d] and owners_differ:
            swaps.append(words[:a] + words[c:d] + words[b:c] + words[a:b] + words[d:])
    return swaps


def swap_attribute_choices(caption: Caption) -> Choices:
    """`swap_attributes`: two different colours, sizes, materials, ages or states of two noun phrases exchange
    places, or two counts, or two places in the frame; one group of alternatives per kind."""
    swaps = _attribute_swaps(caption)
    swaps["count"], swaps["place"] = _count_swaps(caption), _place_swaps(caption)
    return [swaps[kind] for kind in sorted(swaps) if swaps[kind]]


def _used(caption: Caption, kind: str) -> set[str]:
    """Every word of `kind` the caption uses, with their near synonyms."""
    return {near for word in caption.lower if KIND_OF.get(word) == kind for near in NEAR[word]}


def _replacements(caption: Caption, attribute: Attribute) -> list[str]:
    """What an attribute may become: another colour or material of its noun's palette that the caption does not
    use, or the opposite size, age or state; nothing for a person's colour or body size, nor inside an idiom."""
    word, category = caption.lower[attribute.index], category_of(caption, attribute.phrase)
    following = caption.lower[attribute.index + 1 : attribute.index + 2]
    previous = caption.lower[attribute.index - 1 : attribute.index]
    if set(following) & IDIOM_AFTER.get(word, set()) or set(previous) & IDIOM_BEFORE.get(word, set()):
        return []
    if attribute.kind in ("colour", "material"):
        palettes = COLOUR_PALETTES if attribute.kind == "colour" else MATERIAL_PALETTES
        used = _used(caption, attribute.kind)
        return [other for other in palettes.get(category, palettes[None]) if other not in used]
    if attribute.kind == "size" and category == "person" and word in BODY_SIZES:
        return []
    head = caption.lower[caption.phrases[attribute.phrase].head] if attribute.phrase is not None else ""
    if word == "short":
        return ["long" if head in LENGTHY_NOUNS else "tall"]
    if attribute.kind == "age" and head in YOUTHFUL:
        return []
    if word == "old":
        return ["young" if category in ANIMATE else "new"]
    if word == "empty" and category in ("place", "room"):
        return ["crowded"]
    return [OPPOSITES[word]] if fits(OPPOSITES[word], attribute.kind, category) else []


def replace_attribute_choices(caption: Caption) -> Choices:
    """`replace_attribute`: one attribute word becomes another of its kind (never a synonym); one group of
    alternatives per attribute."""
    choices = []
    for attribute in caption.attributes:
        others = _replacements(caption, attribute)
        if others:
            choices.append([{attribute.index: other} for other in others])
    return choices


def _recount(caption: Caption, phrase: Phrase, new: str) -> Edit | None:
    """The caption with `phrase` counted `new`, its noun and a following "is"/"are" agreeing; None where the number
    of the noun or of the verb cannot be made to agree."""
    old = COUNTS.index(caption.lower[phrase.count]) + 1
    value = COUNTS.index(new) + 1
    replacements = {phrase.count: new}
    if (old == 1) != (value == 1):
        if caption.lower[phrase.start - 1 : phrase.start] in (("between",), ("among",)):
            return None  # "between two fields" has no singular
        noun = phrase.noun
        if (
            noun is None
            or phrase.compound
            or noun.singular in PLURAL_ONLY | SAME_PLURAL | MASS_NOUNS
            or noun.plural_form != (old > 1)
        ):
            return None
        replacements[phrase.head] = noun.form(value > 1)
        following = caption.lower[phrase.end] if phrase.end < len(caption.lower) else ""
        if following in _AGREEMENT:
            replacements[phrase.end] = _AGREEMENT[following]
        elif caption.tags[phrase.end : phrase.end + 1] == ("VERB",) and not following.endswith("ing"):
            return None
    return replacements


def replace_count_choices(caption: Caption) -> Choices:
    """`replace_count`: a count becomes the next or the previous one ("two dogs" → "three dogs", "one dog" → "two
    dogs", "two dogs are" → "one dog is"); one group of alternatives per counted phrase."""
    choices = []
    for phrase in caption.phrases:
        if phrase.count is None:
            continue
        value = COUNTS.index(caption.lower[phrase.count]) + 1
        recounted = [
            _recount(caption, phrase, COUNTS[other - 1]) for other in (value - 1, value + 1) if 1 <= other <= 10
        ]
        recounted = [edit for edit in recounted if edit is not None]
        if recounted:
            choices.append(recounted)
    return choices
