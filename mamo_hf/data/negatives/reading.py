"""How the caption negatives read a caption, by rules and lexicons only: relations, places in the frame, side words,
noun phrases and the attributes in them.

`read_caption(words)` tags each word, then groups words into noun phrases: a phrase starts at a determiner, a count
or a content word and runs through attributes, nouns and unknown words to its head, the last of them ("a large red
circle", "two white dogs", "a red fire hydrant"). A participle inside a phrase is an adjective when it follows a
determiner or an attribute ("a sleeping cat"), else it ends the phrase ("a cat sleeping"). Two attributes of one kind
joined by "and" stay in one phrase ("a red and white bus"). Words of two lexicons are read by their place: "orange"
and "glass" before a noun are a colour and a material ("an orange cat", "a glass table"), as the head they are a
fruit and a thing to drink from ("an orange and a banana", "a glass of water"), and "orange" before "juice" is the
fruit.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from ..sides import SIDE_WORDS, names_a_side
from .lexicon import (
    ADJECTIVES,
    BE_VERBS,
    COUNTS,
    DETERMINERS,
    DUAL_WORDS,
    FINITE_VERBS,
    FRUIT_COMPOUNDS,
    FUNCTION_WORDS,
    KIND_OF,
    LONGEST_RELATION,
    NOT_RELATION_AFTER,
    NOUNS_LIKE_VERBS,
    PLACE_PREPOSITIONS,
    PLACE_WORDS,
    RELATION_STARTS,
    RELATIONS,
)
from .nouns import COMPOUND_CATEGORIES, NOUNS, Noun

# Tags of words that belong to a noun phrase.
_CONTENT = frozenset({"ATTR", "NOUN", "WORD", "MODIFIER", "ADJ"})
_PRONOUNS_WITH_S = frozenset("it's he's she's that's there's what's who's here's".split())


@dataclass(frozen=True)
class Phrase:
    """A noun phrase: words `start` to `end` (exclusive), its `head` (the last word), the head's `noun` when known
    and its `category`; `count` is the index of its count word ("two") if any; `compound` says whether an unknown
    word or another noun stands right before the head ("a fire hydrant", "a dog bed")."""

    start: int
    end: int
    head: int
    noun: Noun | None
    category: str | None
    count: int | None
    compound: bool


@dataclass(frozen=True)
class Attribute:
    """An attribute word at `index` of `kind`, describing phrase `phrase` (None: unknown) as its `role`: a
    "modifier" inside the phrase, a "predicate" after a verb "to be", or a "noun" of its own ("dressed in red")."""

    index: int
    kind: str
    phrase: int | None
    role: str


@dataclass(frozen=True)
class Relation:
    """A relation phrase, words `start` to `end`, with its `opposites` (none for a symmetric relation)."""

    start: int
    end: int
    opposites: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Caption:
    """A caption as read: its `words` (the first one lower-cased unless it is an acronym), their lower-case forms and
    tags, noun phrases, attributes, relations, spans of place words ("top left" in "at the top left") and free side
    words ("on the left"); `capitalised` says whether the caption began with a capital."""

    words: tuple[str, ...]
    lower: tuple[str, ...]
    tags: tuple[str, ...]
    phrases: tuple[Phrase, ...]
    attributes: tuple[Attribute, ...]
    relations: tuple[Relation, ...]
    places: tuple[tuple[int, int], ...]
    sides: tuple[int, ...]
    capitalised: bool

    def phrase_starting(self, index: int) -> int | None:
        """The phrase that starts at word `index`, if any."""
        return next((number for number, phrase in enumerate(self.phrases) if phrase.start == index), None)

    def phrase_ending(self, index: int) -> int | None:
        """The phrase whose last word is `index - 1`, if any."""
        return _phrase_ending(self.phrases, index)


def _phrase_ending(phrases: Sequence[Phrase], index: int) -> int | None:
    """The number of the phrase whose last word is `index - 1`, if any."""
    return next((number for number, phrase in enumerate(phrases) if phrase.end == index), None)


def _neighbour(lower: Sequence[str], index: int) -> str | None:
    return lower[index] if 0 <= index < len(lower) and lower[index][:1].isalpha() else None


def _is_relation(lower: Sequence[str], start: int, unit: tuple[str, ...]) -> bool:
    """Whether `unit` at `start` is a relation: its side word names a side, and no idiom holds it ("made out of")."""
    if lower[start - 1 : start] and lower[start - 1] in NOT_RELATION_AFTER.get(unit, ()):
        return False
    for offset, word in enumerate(unit):
        if word in SIDE_WORDS:
            index = start + offset
            return names_a_side(word, _neighbour(lower, index - 1), _neighbour(lower, index + 1))
    return True


def _place_end(lower: Sequence[str], start: int) -> int:
    """The end of the place words of "at/on/in the <place words>" starting at `start`, or `start` if none."""
    if lower[start] not in PLACE_PREPOSITIONS or lower[start + 1 : start + 2] != ("the",):
        return start
    end = start + 2
    while end < len(lower) and lower[end] in PLACE_WORDS:
        end += 1
    return end if end > start + 2 else start


def _long_relation(lower: tuple[str, ...], index: int) -> tuple[str, ...]:
    """The longest relation of two words or more that starts at `index`, or ()."""
    if lower[index] in RELATION_STARTS:
        for length in range(min(LONGEST_RELATION, len(lower) - index), 1, -1):
            if lower[index : index + length] in RELATIONS:
                return lower[index : index + length]
    return ()


def _frame_words(lower: tuple[str, ...], tags: list[str | None]):
    """Relations (longest first; a single word only where no place phrase starts) and place spans, tagged."""
    relations, places, index = [], [], 0
    while index < len(lower):
        unit = _long_relation(lower, index)
        place_end = 0 if unit else _place_end(lower, index)
        if not unit and place_end == index and lower[index : index + 1] in RELATIONS:
            unit = lower[index : index + 1]
        if unit and _is_relation(lower, index, unit):
            relations.append(Relation(index, index + len(unit), RELATIONS[unit]))
            tags[index : index + len(unit)] = ["REL"] * len(unit)
            index += len(unit)
        elif place_end > index:
            places.append((index + 2, place_end))
            tags[index:place_end] = ["PLACE"] * (place_end - index)
            index = place_end
        else:
            index += 1
    return tuple(relations), tuple(places)


def _word_tag(word: str) -> str:
    """The tag of a word out of context."""
    if not word[:1].isalpha():
        return "PUNCT"
    if word in DETERMINERS:
        return "DET"
    if word in _PRONOUNS_WITH_S:
        return "FUNC"
    if word.endswith("'s"):
        return "POSS"
    if word in COUNTS:
        return "NUM"
    if word in FUNCTION_WORDS:
        return "FUNC"
    if word in KIND_OF:
        return "ATTR"
    if word in NOUNS:
        return "NOUN"
    if word in ADJECTIVES:
        return "ADJ"
    if word in FINITE_VERBS or (len(word) > 4 and word.endswith(("ing", "ed")) and word not in NOUNS_LIKE_VERBS):
        return "VERB"
    return "WORD"


def _tags(lower: tuple[str, ...]):
    """Tags of every word in context, relations and place spans, and the free side words."""
    tags: list[str | None] = [None] * len(lower)
    relations, places = _frame_words(lower, tags)
    sides = []
    for index, word in enumerate(lower):
        if tags[index] is not None:
            continue
        if word in SIDE_WORDS:
            side = names_a_side(word, _neighbour(lower, index - 1), _neighbour(lower, index + 1))
            tags[index] = "SIDE" if side else "FUNC"
            sides.extend([index] if side else [])
            continue
        tags[index] = _word_tag(word)
        if tags[index] == "VERB" and index and tags[index - 1] in ("DET", "NUM", "POSS", "ATTR", "ADJ", "MODIFIER"):
            tags[index] = "MODIFIER"  # a participle before its noun: "a sleeping cat"
    return tags, relations, places, tuple(sides)


def _joins_attributes(lower: Sequence[str], tags: Sequence[str], index: int, last: int | None) -> bool:
    """Whether the "and"/"or"/"," at `index` joins two attributes of one kind before a noun ("red and white bus")."""
    if last is None or lower[index] not in ("and", "or", ",") or tags[last] != "ATTR" or index + 2 >= len(lower):
        return False
    same_kind = tags[index + 1] == "ATTR" and KIND_OF[lower[index + 1]] == KIND_OF[lower[last]]
    return same_kind and tags[index + 2] in _CONTENT


def _phrase_spans(lower: Sequence[str], tags: Sequence[str]) -> list[tuple[int, int]]:
    """`(start, end)` of every noun phrase: determiners and counts, then content words up to the head. A possessive
    ("the man's") is the head of its phrase, and a new phrase starts after it."""
    spans, start, last = [], None, None
    for index, tag in enumerate(tags):
        if tag in ("DET", "NUM"):
            if last is not None:  # a determiner after content words starts the next phrase
                spans.append((start, last + 1))
                start, last = None, None
            start = index if start is None else start
        elif tag in _CONTENT:
            start, last = index if start is None else start, index
        elif tag == "POSS":
            spans.append((index if start is None else start, index + 1))
            start, last = None, None
        elif not _joins_attributes(lower, tags, index, last):
            if last is not None:
                spans.append((start, last + 1))
            start, last = None, None
    if last is not None:
        spans.append((start, last + 1))
    return spans


def _head_noun(lower: Sequence[str], tags: Sequence[str], head: int) -> tuple[Noun | None, str | None]:
    """The head's noun and category: compounds first ("hot dog"), attributes only as nouns ("an orange")."""
    word = lower[head].removesuffix("'s")
    compound = COMPOUND_CATEGORIES.get((lower[head - 1], word)) if head else None
    if compound:
        return None, compound
    if tags[head] == "ATTR" and word not in DUAL_WORDS:
        return None, None
    noun = NOUNS.get(word)
    return noun, noun.category if noun else None


def _phrase(lower: Sequence[str], tags: Sequence[str], start: int, end: int) -> Phrase:
    head = end - 1
    noun, category = _head_noun(lower, tags, head)
    count = next((index for index in range(start, head) if tags[index] == "NUM"), None)
    compound = head > start and tags[head - 1] in ("NOUN", "WORD")
    return Phrase(start, end, head, noun, category, count, compound)


def _attributes(lower: Sequence[str], tags: Sequence[str], phrases: Sequence[Phrase]) -> tuple[Attribute, ...]:
    """Every attribute word with its role and the phrase it describes; words of two lexicons read by their place."""
    found = []
    for number, phrase in enumerate(phrases):
        after_be = phrase.start > 0 and lower[phrase.start - 1] in BE_VERBS
        predicate = after_be and all(tags[index] in ("ATTR", "FUNC") for index in range(phrase.start, phrase.end))
        after_in = lower[phrase.start - 1 : phrase.start] == ("in",)
        for index in range(phrase.start, phrase.end):
            word = lower[index]
            if tags[index] != "ATTR" or (word == "orange" and _neighbour(lower, index + 1) in FRUIT_COMPOUNDS):
                continue
            kind = KIND_OF[word]
            if predicate:
                found.append(Attribute(index, kind, _phrase_ending(phrases, phrase.start - 1), "predicate"))
            elif index < phrase.head:
                found.append(Attribute(index, kind, number, "modifier"))
            elif kind == "colour" and word not in DUAL_WORDS and after_in and phrase.start == phrase.head:
                found.append(Attribute(index, kind, None, "noun"))
    return tuple(found)


@functools.lru_cache(maxsize=4096)
def read_caption(words: tuple[str, ...]) -> Caption:
    """The caption of `words` (see `english.split_words`) as read by the rules of this module."""
    capitalised = bool(words) and words[0][:1].isupper()
    if words and not (len(words[0]) > 1 and words[0].isupper()):
        words = (words[0][:1].lower() + words[0][1:], *words[1:])
    lower = tuple(word.lower() for word in words)
    tags, relations, places, sides = _tags(lower)
    phrases = tuple(_phrase(lower, tags, start, end) for start, end in _phrase_spans(lower, tags))
    attributes = _attributes(lower, tags, phrases)
    return Caption(words, lower, tuple(tags), phrases, attributes, relations, places, sides, capitalised)
