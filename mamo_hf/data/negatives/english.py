"""Words in and out of a caption: splitting, joining, the article "a"/"an" before the word that follows, and case."""

import re
from collections.abc import Sequence

_WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*|[^\sA-Za-z]+")
# Words spelled with a vowel that sound with a consonant ("a unicorn", "a one"), and the other way ("an hour").
_CONSONANT_SOUNDS = ("one", "once", "uni", "use", "usu", "uten", "util", "uku", "ure", "uri", "euro", "eu", "ewe")
_VOWEL_SOUNDS = ("hour", "honest", "honor", "honour", "heir", "suv", "x-ray", "mri", "fbi", "nba", "nfl", "hdmi")


def split_words(caption: str) -> list[str]:
    """The caption's words and punctuation marks, in order ("A dog's toy." → ["A", "dog's", "toy", "."])."""
    return _WORD.findall(caption)


def join_words(words: Sequence[str]) -> str:
    """The words as one caption, without a space before punctuation."""
    return re.sub(r" ([,.;:!?])", r"\1", " ".join(words))


def takes_an(word: str) -> bool:
    """Whether "an" goes before `word` ("an orange", "an hour", but "a unicorn", "a red")."""
    lowered = word.lower()
    if lowered.startswith(_VOWEL_SOUNDS):
        return True
    return lowered[:1] in set("aeiou") and not lowered.startswith(_CONSONANT_SOUNDS)


def agree_articles(words: list[str]) -> list[str]:
    """The words with every "a"/"an" agreeing with the word after it ("a orange" → "an orange"), case kept."""
    agreed = list(words)
    for index in range(len(words) - 1):
        if words[index].lower() in ("a", "an") and words[index + 1][:1].isalpha():
            article = "an" if takes_an(words[index + 1]) else "a"
            agreed[index] = article.capitalize() if words[index][0].isupper() else article
    return agreed


def match_case(new: str, old: str) -> str:
    """`new` written like `old`: capitalised when it is ("Red" → "Blue"), upper case when it is, else as given."""
    if len(old) > 1 and old.isupper():
        return new.upper()
    return new[:1].upper() + new[1:] if old[:1].isupper() else new
