"""Actions and what may replace them: only actions that cannot happen together, for the subject and object at hand.

Each verb lists rules `(subject, object, replacements)`: the subject is the noun phrase before the verb ("animate":
a person or an animal), the object the noun phrase right after it (None: no object, the verb is followed by a
preposition or nothing; "*": any phrase; else a kind of noun, see `object_fits`). "A man riding a horse" becomes
"a man feeding a horse", "a man riding a bike" "a man pushing a bike", "a dog sitting on a couch" "a dog standing on
a couch"; "a vase sitting on a table" keeps its verb (a vase that sits on a table also stands on it), and so do
verbs that can go with others ("holding", "wearing", "looking", "petting" while feeding, "cutting" while eating).
"""

from .nouns import ANIMATE, RIDEABLE, Noun

ACTIONS = {
    "sitting": (("animate", None, ("standing", "lying")),),
    "standing": (("animate", None, ("sitting", "lying")),),
    "lying": (("animate", None, ("sitting", "standing")),),
    "laying": (("animate", None, ("sitting", "standing")),),
    "kneeling": (("animate", None, ("standing",)),),
    "sits": (("animate", None, ("stands", "lies")),),
    "stands": (("animate", None, ("sits", "lies")),),
    "lies": (("animate", None, ("sits", "stands")),),
    "walking": (("animate", None, ("running",)), ("person", "animal", ("feeding",))),
    "running": (("animate", None, ("walking",)),),
    "swimming": (("animate", None, ("standing",)),),
    "sleeping": (("animate", None, ("eating", "playing")),),
    "riding": (
        ("person", "rideable", ("leading", "feeding")),
        ("person", "two_wheeler", ("pushing",)),
        ("person", "board", ("carrying",)),
    ),
    "feeding": (("person", "rideable", ("riding",)),),
    "pushing": (("person", "two_wheeler", ("riding",)), ("animate", "*", ("pulling",))),
    "pulling": (("animate", "*", ("pushing",)),),
    "carrying": (("person", "board", ("riding",)), ("person", "two_wheeler", ("riding",))),
    "throwing": (("animate", "*", ("catching",)),),
    "catching": (("animate", "*", ("throwing",)),),
    "opening": (("person", "*", ("closing",)),),
    "closing": (("person", "*", ("opening",)),),
    "eating": (("person", "sliced", ("making",)), ("person", "handheld", ("making",))),
    "cutting": (("person", "food", ("eating",)),),
    "cooking": (("person", "food", ("eating",)),),
    "drinking": (("person", "*", ("pouring",)),),
    "pouring": (("person", "*", ("drinking",)),),
    "smiling": (("person", None, ("frowning",)),),
    "frowning": (("person", None, ("smiling",)),),
    "laughing": (("person", None, ("crying",)),),
    "crying": (("person", None, ("laughing",)),),
    "parked": (("vehicle", None, ("driving",)),),
    "driving": (("person", "road", ("pushing",)),),
    "entering": (("animate", "*", ("leaving",)),),
    "leaving": (("animate", "*", ("entering",)),),
    "boarding": (("person", "vehicle", ("leaving",)),),
    "buying": (("person", "*", ("selling",)),),
    "selling": (("person", "*", ("buying",)),),
}
# Replacements that do not go before these words: "lying at a desk", "catching a frisbee to a dog", "drinking wine
# into a glass".
UNFIT_BEFORE = {
    **dict.fromkeys(("lying", "laying", "lies"), frozenset({"at", "around"})),
    **dict.fromkeys(
        ("catching", "drinking", "pulling", "riding"), frozenset("to into onto at toward towards".split())
    ),
}
# Verbs that make "X verb Y" differ from "Y verb X": the phrases around them may be exchanged.
DIRECTED_VERBS = frozenset(
    "chasing following watching holding carrying riding feeding pushing pulling biting licking eating leading "
    "petting grooming hitting kicking throwing catching walking sniffing attacking towing driving washing".split()
)


def subject_fits(wanted: str, noun: Noun | None) -> bool:
    """Whether the subject's head noun is of the `wanted` kind ("animate", "person" or "vehicle")."""
    if noun is None:
        return False
    return noun.category in ANIMATE if wanted == "animate" else noun.category == wanted


def object_fits(wanted: str | None, has_object: bool, noun: Noun | None) -> bool:
    """Whether the verb's object (`has_object`: a noun phrase follows; `noun`: its head, None if unknown) fits."""
    if wanted is None or not has_object:
        return wanted is None and not has_object
    if wanted == "*":
        return True
    if noun is None:
        return False
    if wanted == "rideable":
        return noun.singular in RIDEABLE
    return wanted in (noun.category, noun.kind)
