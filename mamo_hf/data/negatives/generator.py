"""`CaptionNegatives`, the families by name, and each family as a function of a caption's words."""

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .attributes import replace_attribute_choices, replace_count_choices, swap_attribute_choices
from .edits import Choices, Edit, Words, apply
from .english import agree_articles, join_words, split_words
from .objects import replace_action_choices, replace_object_choices, swap_object_choices
from .reading import Caption, read_caption
from .relations import swap_relation_choices

_CHOICES: dict[str, Callable[[Caption], Choices]] = {
    "swap_attributes": swap_attribute_choices,
    "replace_attribute": replace_attribute_choices,
    "replace_count": replace_count_choices,
    "swap_objects": swap_object_choices,
    "replace_object": replace_object_choices,
    "replace_action": replace_action_choices,
    "swap_relation": swap_relation_choices,
}
FAMILIES = (*_CHOICES, "shuffle")
# Shuffled words are negatives no image has, but too easy to teach binding and ungrammatical: opt-in only.
DEFAULT_FAMILIES = tuple(_CHOICES)


def _finished(words: Words, caption: Caption) -> Words:
    """A negative's words with its articles agreeing and, like the caption, a capital first letter."""
    words = agree_articles(words)
    if caption.capitalised and words:
        words[0] = words[0][:1].upper() + words[0][1:]
    return words


def _family_function(name: str) -> Callable[[Sequence[str], random.Random], Words | None]:
    choices_of = _CHOICES[name]

    def family(words: Sequence[str], rng: random.Random) -> Words | None:
        caption = read_caption(tuple(words))
        choices = choices_of(caption)
        return _finished(apply(caption, rng.choice(rng.choice(choices))), caption) if choices else None

    family.__name__ = family.__qualname__ = name
    family.__doc__ = f"One negative of `words` by {choices_of.__doc__.strip()} None if there is none to make."
    return family


swap_attributes = _family_function("swap_attributes")
replace_attribute = _family_function("replace_attribute")
replace_count = _family_function("replace_count")
swap_objects = _family_function("swap_objects")
replace_object = _family_function("replace_object")
replace_action = _family_function("replace_action")
swap_relation = _family_function("swap_relation")


def shuffle(words: Sequence[str], rng: random.Random) -> Words | None:
    """The words in another order (punctuation kept where it is); None for fewer than two different words."""
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


def _normalised(words: Sequence[str]) -> str:
    """Words compared without case or spacing."""
    return " ".join(words).lower()


def _draw(pool: Choices, rng: random.Random) -> Edit:
    """One alternative out of a family's choices, removed from them: a group at random, then one of its own."""
    group = rng.choice(pool)
    drawn = group.pop(rng.randrange(len(group)))
    if not group:
        pool.remove(group)
    return drawn


@dataclass(frozen=True)
class CaptionNegatives:
    """Draws up to `k` distinct hard-negative captions per caption (see the package's docstring).

    Args:
        k (`int`): negatives per caption, at most.
        families (`tuple[str, ...]`): the rule families to draw from (`DEFAULT_FAMILIES` by default, every family
            but `shuffle`; `FAMILIES` names them all); each negative picks a family at random among those that can
            still change the caption, then one of the things it can change, then one way to change it.
        seed (`int`): mixed into every draw with the caption's key.

    Raises:
        ValueError: for `k < 1` or an unknown family.
    """

    k: int
    families: tuple[str, ...] = DEFAULT_FAMILIES
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
        read = read_caption(tuple(split_words(caption)))
        negatives, seen, families, pools = [], {_normalised(read.words)}, list(self.families), {}
        attempts = 0
        while families and len(negatives) < self.k and attempts < 4 * self.k + 8:
            attempts += 1
            family = rng.choice(families)
            if family == "shuffle":
                words = shuffle(read.words, rng)
            else:
                if family not in pools:
                    pools[family] = _CHOICES[family](read)
                words = apply(read, _draw(pools[family], rng)) if pools[family] else None
            if words is None:
                families.remove(family)  # nothing (more) this family can change in this caption
                continue
            words = _finished(words, read)
            if _normalised(words) not in seen:
                seen.add(_normalised(words))
                negatives.append(join_words(words))
        return negatives
