"""Families that change the things and the actions: exchange two nouns, replace a noun or a verb."""

from itertools import combinations

from .actions import ACTIONS, UNFIT_BEFORE, object_fits, subject_fits
from .edits import Choices, says_something_else
from .lexicon import BE_VERBS, DUAL_WORDS
from .nouns import (
    COLLECTIVES,
    FREELY_SWAPPABLE,
    GENDER_CUES,
    GROUPS_OF_KIND,
    KEPT_AFTER,
    KEPT_BEFORE,
    MASS_NOUNS,
    NOUNS,
    SAME_PLURAL,
    SINGULAR_DETERMINERS,
    SWAPPABLE,
    Noun,
)
from .reading import Caption, Phrase


def _plain_noun(caption: Caption, phrase: Phrase) -> Noun | None:
    """The phrase's head noun when it stands alone (no compound before it, not a possessive, not a mass noun), else
    None."""
    noun = phrase.noun
    if noun is None or phrase.compound or noun.singular in MASS_NOUNS or caption.lower[phrase.head].endswith("'s"):
        return None
    return noun


def _is_plural(caption: Caption, phrase: Phrase, noun: Noun) -> bool:
    """Whether the head is plural; "sheep" is singular after "a", "one", "this" and the like only."""
    if noun.singular in SAME_PLURAL:
        return caption.lower[phrase.start] not in SINGULAR_DETERMINERS
    return noun.plural_form


def _exchangeable(first: Noun, second: Noun) -> bool:
    """Whether two nouns may exchange places: different things of one kind, or of one category where any two may
    ("a dog" and "a horse"; not "a cake" and "strawberries", nor "a table" and "chairs")."""
    if first.category != second.category or first.category not in SWAPPABLE or first.singular == second.singular:
        return False
    if first.kind is None or second.kind is None or first.kind != second.kind:
        return first.category in FREELY_SWAPPABLE and (first.kind, first.group) != (second.kind, second.group)
    return first.group != second.group


def swap_object_choices(caption: Caption) -> Choices:
    """`swap_objects`: the head nouns of two phrases exchange places, each taking the other's number ("a black dog
    and two white cats" → "a black cat and two white dogs"), where they may (`_exchangeable`) and the caption then
    says something else; one group of alternatives."""
    swaps = []
    for first, second in combinations(range(len(caption.phrases)), 2):
        a, b = caption.phrases[first], caption.phrases[second]
        nouns = _plain_noun(caption, a), _plain_noun(caption, b)
        if None in nouns or not _exchangeable(*nouns):
            continue
        plurals = _is_plural(caption, a, nouns[0]), _is_plural(caption, b, nouns[1])
        replacements = {a.head: nouns[1].form(plurals[0]), b.head: nouns[0].form(plurals[1])}
        if says_something_else(caption, first, second, replacements):
            swaps.append(replacements)
    return [swaps] if swaps else []


def _kept_in_place(caption: Caption, phrase: Phrase, kind: str) -> bool:
    """Whether the words around a phrase keep its noun: "in a bowl" (not "in a plate"), "a field of flowers", "a
    flock of sheep"."""
    before = caption.lower[max(phrase.start - 2, 0) : phrase.start]
    after = caption.lower[phrase.end : phrase.end + 1]
    if before[-1:] == ("of",) and before[0] in COLLECTIVES:
        return True
    return bool(set(before[-1:]) & KEPT_AFTER.get(kind, set()) or set(after) & KEPT_BEFORE.get(kind, set()))


def _replaceable(caption: Caption, phrase: Phrase) -> Noun | None:
    """The phrase's head noun if it may be replaced: a noun with a kind, not kept in place by the words around it,
    and no man or woman in a caption that says "his", "her" or "beard"."""
    noun = _plain_noun(caption, phrase)
    if noun is None or noun.kind is None:
        return None
    if _kept_in_place(caption, phrase, noun.kind):
        return None
    if noun.category == "person" and not GENDER_CUES.isdisjoint(caption.lower):
        return None
    return noun


def _verb_object_kind(caption: Caption, phrase: Phrase) -> str | None:
    """The kind of object the verb right before the phrase asks for ("riding" a rideable animal), if any."""
    verb = phrase.start - 1
    if verb < 0 or caption.lower[verb] not in ACTIONS or caption.tags[verb] != "VERB":
        return None
    rule = _rule(caption, verb)
    return rule[1] if rule and rule[1] not in (None, "*") else None


def _other_nouns(caption: Caption, phrase: Phrase, noun: Noun) -> list[str]:
    """The first noun of every other synonym group of `noun`'s kind that the caption does not name, that its verb
    can take and that an attribute before it cannot swallow, in the head's number."""
    named = {NOUNS[word].singular for word in caption.lower if word in NOUNS}
    groups, wanted = GROUPS_OF_KIND[noun.kind], _verb_object_kind(caption, phrase)
    others = [group[0] for number, group in enumerate(groups) if number != noun.group and named.isdisjoint(group)]
    others = [other for other in others if wanted is None or object_fits(wanted, True, NOUNS[other])]
    if caption.tags[phrase.head - 1] == "ATTR":  # "a green apple" must not become "a green orange"
        others = [other for other in others if other not in DUAL_WORDS]
    return [NOUNS[other].form(_is_plural(caption, phrase, noun)) for other in others]


def replace_object_choices(caption: Caption) -> Choices:
    """`replace_object`: a noun becomes another of its kind, never a synonym ("dog" → "cat", "car" → "bus", "man" →
    "woman"); one group of alternatives per phrase."""
    choices = []
    for phrase in caption.phrases:
        noun = _replaceable(caption, phrase)
        if noun is None:
            continue
        others = _other_nouns(caption, phrase, noun)
        if others:
            choices.append([{phrase.head: other} for other in others])
    return choices


def _subject(caption: Caption, verb: int) -> Phrase | None:
    """The phrase right before the verb, or before "is"/"are" before it."""
    before = verb - 1 if verb and caption.lower[verb - 1] in BE_VERBS else verb
    number = caption.phrase_ending(before)
    return None if number is None else caption.phrases[number]


def _rule(caption: Caption, verb: int) -> tuple | None:
    """The first rule of `ACTIONS` for the verb at `verb` that its subject and object fit, if any."""
    subject = _subject(caption, verb)
    after = caption.phrase_starting(verb + 1)
    if subject is None or (after is None and caption.tags[verb + 1 : verb + 2] in (("WORD",), ("NOUN",), ("ATTR",))):
        return None  # no subject, or an object this reading did not make a phrase of
    obj = None if after is None else _plain_noun(caption, caption.phrases[after])
    for rule in ACTIONS[caption.lower[verb]]:
        if subject_fits(rule[0], subject.noun) and object_fits(rule[1], after is not None, obj):
            return rule
    return None


def _action_replacements(caption: Caption, verb: int) -> list[str]:
    """What the verb at `verb` may become: the replacements of its rule that the caption does not use and that fit
    the word after the verb or its object ("lying at" does not)."""
    rule = _rule(caption, verb)
    if rule is None:
        return []
    after = caption.phrase_starting(verb + 1)
    end = verb + 1 if after is None else caption.phrases[after].end
    following = caption.lower[end] if end < len(caption.lower) else ""
    return [other for other in rule[2] if other not in caption.lower and following not in UNFIT_BEFORE.get(other, ())]


def replace_action_choices(caption: Caption) -> Choices:
    """`replace_action`: a verb becomes one that cannot happen with it ("riding a horse" → "feeding a horse",
    "sitting on a bench" → "standing on a bench"); one group of alternatives per verb."""
    choices = []
    for index, word in enumerate(caption.lower):
        if word in ACTIONS and caption.tags[index] == "VERB":
            others = _action_replacements(caption, index)
            if others:
                choices.append([{index: other} for other in others])
    return choices
