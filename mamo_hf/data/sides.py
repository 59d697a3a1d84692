"""Which "left" and "right" of a caption name a side of the frame or of a thing, and which do not.

"Left" is also the past tense of "leave" ("the man left the room", "a bag left on a bench", "a cat left alone") and
"right" is also an intensifier ("right next to", "right behind") or part of "all right" and "right now". The flip
augmentation mirrors only the words that name a side, and the caption negatives invert only those; both ask
`names_a_side` with the word's neighbours, so the two agree.

The rules, in order: "left" after an auxiliary of the perfect or a pronoun ("has left", "nothing left of") is the
verb. A word after a determiner, a possessive, a place word ("top left", "far right"), "from", or a verb of
direction ("turn left", "facing right"), or before "of", "side", "hand", "corner" and other parts of a thing ("left
of", "right hand"), names a side. Otherwise "right" before a preposition or an adverb of place or time ("right next
to", "right there", "right now") does not, and "left" after "is" or "was" ("was left"), before an object, a
preposition or a particle ("left the room", "left on a bench", "left alone", "left behind"), or at the end ("the man
left") does not. Anything else names a side, as every "left" and "right" did before these rules.
"""

SIDE_WORDS = frozenset({"left", "right"})
# Words after which "left"/"right" names a side.
_SIDE_AFTER = frozenset(
    "the a an his her its their my your our top bottom upper lower middle center centre far extreme front "
    "rear from turn turns turning turned pointing points pointed facing faces faced looking looks looked heading "
    "heads headed going goes moving moves moved leaning leans leaned swerving veering glancing steering".split()
)
# Words before which "left"/"right" names a side (parts and sides of a thing, "of").
_SIDE_BEFORE = frozenset(
    "of side sides hand hands handed corner corners edge edges half part arm arms leg legs foot feet eye eyes ear "
    "ears wing wings lane lanes turn turns wall panel column shoulder cheek knee wrist ankle elbow thumb glove shoe "
    "boot sock pocket headlight door window seat field bank".split()
)
# "right" before these is an intensifier or part of an idiom: "right next to", "right there", "right now".
_AFTER_INTENSIFIER = frozenset(
    "next behind in on at above below under beside by near there here now away outside inside over into through up "
    "down before after between across against along beneath underneath where off out onto toward towards".split()
)
# "left" after these is the verb unless a side word follows: "was left on a bench" but "is left of a tree".
_BEFORE_VERB_LEFT = frozenset("was were is are be it which that".split())
# "left" after these is the verb whatever follows: "has left", "nothing left of the cake", "he left".
_ALWAYS_VERB_LEFT = frozenset(
    "has have had having been being get gets got getting just already recently he she they we i you who someone "
    "somebody everyone nothing".split()
)
# "left" before these is the verb: "left the room", "left on a bench", "left alone", "left behind".
_AFTER_VERB_LEFT = frozenset(
    "the a an his her him them it their its this these those some home early alone behind unattended untouched "
    "over out open empty outside inside on in at by near under underneath beside next for after with to there "
    "here lying sitting standing hanging parked".split()
)


def names_a_side(word: str, previous: str | None, following: str | None) -> bool:
    """Whether `word` ("left" or "right", any case) names a side, given the words before and after it (None at the
    caption's ends). A hyphenated compound ("left-hand") passes its tail with the hyphen as `following` ("-hand");
    all of them name a side except "left-over"."""
    word, previous, following = word.lower(), (previous or "").lower(), (following or "").lower()
    if following.startswith("-"):
        return not (word == "left" and following.startswith("-over"))
    if word == "left" and previous in _ALWAYS_VERB_LEFT:
        return False
    if previous in _SIDE_AFTER or following in _SIDE_BEFORE:
        return True
    if word == "right":
        return previous != "all" and following not in _AFTER_INTENSIFIER
    return not (previous in _BEFORE_VERB_LEFT or following in _AFTER_VERB_LEFT or not following)


__all__ = ["SIDE_WORDS", "names_a_side"]
