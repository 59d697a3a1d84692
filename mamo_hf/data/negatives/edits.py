"""What the families share: words replaced in place, and whether an exchange between two phrases changes what the
caption says (an exchange that leaves the same phrases around a symmetric relation is a paraphrase, not a negative).
"""

from .actions import DIRECTED_VERBS
from .english import match_case
from .lexicon import COLOUR_PALETTES, MATERIAL_PALETTES, NEAR
from .nouns import ANIMATE
from .reading import Caption

# A negative as words, or as the words to replace in the caption (index → new word); a family's answer: groups of
# alternatives, one group per thing it can change.
Words = list[str]
Edit = Words | dict[int, str]
Choices = list[list[Edit]]
_ALL_COLOURS = COLOUR_PALETTES[None]


def apply(caption: Caption, edit: Edit) -> Words:
    """The words of a negative: `edit` itself, or the caption with its replacements."""
    return replaced(caption, edit) if isinstance(edit, dict) else edit


def replaced(caption: Caption, replacements: dict[int, str]) -> Words:
    """The caption's words with the word at each index of `replacements` replaced, written in the old word's case."""
    words = list(caption.words)
    for index, new in replacements.items():
        words[index] = match_case(new, words[index])
    return words


def category_of(caption: Caption, phrase: int | None) -> str | None:
    """The category of phrase number `phrase` (None for no phrase or an unknown head)."""
    return None if phrase is None else caption.phrases[phrase].category


def fits(word: str, kind: str, category: str | None) -> bool:
    """Whether an attribute `word` of `kind` can describe a noun of `category` (a red dog cannot; nor can a colour
    or a body size describe a person)."""
    if kind == "colour":
        return not NEAR[word].isdisjoint(COLOUR_PALETTES.get(category, _ALL_COLOURS))
    if kind == "material":
        return not NEAR[word].isdisjoint(MATERIAL_PALETTES.get(category, MATERIAL_PALETTES[None]))
    if kind == "size":
        return category != "person" or word in ("tall", "short")
    if kind == "age":
        return word != "new" if category in ANIMATE else word != "young"
    return True


def _signature(caption: Caption, phrase: int, replacements: dict[int, str]) -> tuple[str, ...]:
    """The content words of a phrase, sorted, after `replacements` (determiners left out)."""
    found = caption.phrases[phrase]
    words = [replacements.get(index, caption.lower[index]) for index in range(found.start, found.end)]
    return tuple(
        sorted(word.lower() for word, tag in zip(words, caption.tags[found.start : found.end]) if tag != "DET")
    )


def _directed_link(caption: Caption, first: int, second: int) -> bool:
    """Whether phrases `first` < `second` are neighbours joined by a directed relation or verb ("behind", "left
    of", "chasing"), with no "and", "or" or comma between them."""
    if second != first + 1:
        return False
    between = range(caption.phrases[first].end, caption.phrases[second].start)
    if any(caption.lower[index] in ("and", "or", ",") for index in between):
        return False
    directed = any(relation.opposites for relation in caption.relations if relation.start in between)
    return directed or any(index in caption.sides or caption.lower[index] in DIRECTED_VERBS for index in between)


def says_something_else(caption: Caption, first: int, second: int, replacements: dict[int, str]) -> bool:
    """Whether `replacements` inside phrases `first` < `second` change what the caption says: the pair of phrases
    is no longer the same pair, or it is but a directed relation joins them ("a red car behind a blue car")."""
    before = sorted(_signature(caption, phrase, {}) for phrase in (first, second))
    after = sorted(_signature(caption, phrase, replacements) for phrase in (first, second))
    return before != after or _directed_link(caption, first, second)
