"""The words the caption negatives know, other than nouns (`nouns`) and actions (`actions`).

Attribute words come in groups of words that mean the same or nearly ("small little tiny", "gray grey silver"): a
word is never replaced by a word of its own group, nor swapped with one. Colours and materials are replaced by a word
of the palette of the noun they describe (a dog is brown, white, black or gray; a demo shape takes the demo's six
colours); sizes, ages and states by their opposite.
"""

# Groups of words that mean the same or nearly, by kind (a word may sit in two groups: "teal", "beige").
ATTRIBUTE_GROUPS = {
    "colour": (
        "red crimson scarlet maroon burgundy",
        "orange",
        "yellow gold",
        "green teal",
        "blue navy teal turquoise",
        "purple maroon magenta",
        "pink magenta",
        "brown tan beige khaki",
        "white beige",
        "black",
        "gray grey silver",
    ),
    "size": ("small little tiny mini miniature", "large big huge giant enormous massive", "tall", "short", "long"),
    "material": (
        "wooden wood",
        "metal metallic steel iron aluminum aluminium",
        "plastic",
        "glass",
        "stone marble granite",
        "brick",
        "concrete cement",
        "ceramic porcelain",
        "paper cardboard",
        "leather",
        "wicker",
    ),
    "age": ("young", "old", "new"),
    "state": (
        "open opened",
        "closed shut",
        "clean",
        "dirty",
        "empty",
        "full",
        "wet",
        "dry",
        "sunny",
        "cloudy overcast",
        "crowded busy",
    ),
}
ATTRIBUTE_KINDS = {
    kind: list(dict.fromkeys(word for group in groups for word in group.split()))
    for kind, groups in ATTRIBUTE_GROUPS.items()
}
KIND_OF = {word: kind for kind, words in ATTRIBUTE_KINDS.items() for word in words}
NEAR = {
    word: frozenset(other for group in groups if word in group.split() for other in group.split())
    for groups in ATTRIBUTE_GROUPS.values()
    for word in {word for group in groups for word in group.split()}
}

# What a colour or a material may become, by the category of the noun it describes (`nouns.CATEGORY_OF`).
COLOUR_PALETTES = {
    None: ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "white", "black", "gray"),
    "shape": ("red", "green", "blue", "yellow", "purple", "orange"),
    "animal": ("brown", "white", "black", "gray"),
    "food": ("red", "green", "yellow", "brown"),
    "nature": ("gray", "green", "brown"),
    "person": (),
    "picture": (),
    "place": ("green", "brown", "yellow", "white"),
    "signal": ("red", "yellow", "green"),
}
MATERIAL_PALETTES = {
    None: ("wooden", "metal"),
    "furniture": ("wooden", "metal", "plastic"),
    "building": ("brick", "stone", "wooden", "concrete", "metal"),
    "tableware": ("glass", "plastic", "ceramic", "metal"),
    "bag": ("plastic", "paper", "leather"),
    "container": ("wooden", "plastic", "metal"),
    "other": (),
    "place": (),
    "room": (),
    "person": (),
    "animal": (),
    "food": (),
    "nature": (),
    "clothing": (),
    "shape": (),
}
# Sizes, ages and states become their opposite; "short" is the opposite of "long" for these nouns, else of "tall".
OPPOSITES = {
    **dict.fromkeys("small little tiny mini miniature".split(), "large"),
    **dict.fromkeys("large big huge giant enormous massive".split(), "small"),
    "tall": "short",
    "long": "short",
    "short": "tall",
    "young": "old",
    "old": "new",
    "new": "old",
    **dict.fromkeys(("open", "opened"), "closed"),
    **dict.fromkeys(("closed", "shut"), "open"),
    "clean": "dirty",
    "dirty": "clean",
    "empty": "full",
    "full": "empty",
    "wet": "dry",
    "dry": "wet",
    "sunny": "cloudy",
    **dict.fromkeys(("cloudy", "overcast"), "sunny"),
    **dict.fromkeys(("crowded", "busy"), "empty"),
}
# States that fit some nouns only ("an empty fork"): replaced, never exchanged between phrases.
UNSWAPPABLE = frozenset("empty full crowded busy".split())
LENGTHY_NOUNS = frozenset("hair sleeve sleeves dress skirt pants line stick table bench train board".split())
# Sizes that would describe a person's body or age ("a little girl") are left alone; "tall" and "short" are not.
BODY_SIZES = frozenset(ATTRIBUTE_GROUPS["size"][0].split() + ATTRIBUTE_GROUPS["size"][1].split())
# An attribute before these words is part of a name or an idiom: "a little bit", "a year old boy", "new york".
IDIOM_AFTER = {
    "little": frozenset({"bit", "while"}),
    "new": frozenset("york zealand jersey orleans delhi mexico england".split()),
}
IDIOM_BEFORE = {"old": frozenset("year years month months week weeks day days".split())}
# "orange" before these is the fruit: "orange juice".
FRUIT_COMPOUNDS = frozenset("juice slice slices peel peels wedge wedges tree trees zest segments marmalade".split())
# Words that are an attribute before a noun and a noun of their own as the head of a phrase ("an orange", "a glass
# of water", "a stack of paper"): as a head they are the noun of `nouns` ("orange", "glass") or an unknown noun.
DUAL_WORDS = frozenset("orange glass paper stone metal wood brick plastic iron marble".split())
COUNTS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

# Directed relations and their true opposites (the first is the usual one); the longest match wins, and a relation
# is inverted only before a noun phrase. "on" becomes "under" only before a surface (`nouns.SURFACES`).
RELATION_OPPOSITES = {
    "on top of": ("under", "beneath", "below"),
    "on the top of": ("under", "at the bottom of"),
    "at the top of": ("at the bottom of",),
    "at the bottom of": ("at the top of", "on top of"),
    "on the bottom of": ("on top of",),
    "in front of": ("behind",),
    "in the front of": ("in the back of",),
    "at the front of": ("at the back of",),
    "in the back of": ("in the front of",),
    "at the back of": ("at the front of",),
    "in back of": ("in front of",),
    "behind": ("in front of",),
    "above": ("below",),
    "below": ("above",),
    "beneath": ("on top of",),
    "under": ("on top of",),
    "underneath": ("on top of",),
    "inside": ("outside",),
    "inside of": ("outside of",),
    "outside": ("inside",),
    "outside of": ("inside of",),
    "into": ("out of",),
    "out of": ("into",),
    "toward": ("away from",),
    "towards": ("away from",),
    "away from": ("towards",),
    "left of": ("right of",),
    "right of": ("left of",),
    "to the left of": ("to the right of",),
    "to the right of": ("to the left of",),
    "on the left of": ("on the right of",),
    "on the right of": ("on the left of",),
    "on the left side of": ("on the right side of",),
    "on the right side of": ("on the left side of",),
    "on": ("under",),
}
# "into" and "out of" are inverted only right after a verb ("jumping into a pool", not "pouring wine into a glass").
AFTER_VERB_ONLY = frozenset({("into",), ("out", "of")})
# Relations that hold both ways: the phrases around them are never exchanged, and they have no opposite.
SYMMETRIC_RELATIONS = (
    "next to",
    "close to",
    "across from",
    "opposite",
    "beside",
    "near",
    "by",
    "with",
    "alongside",
    "along with",
    "together with",
    "between",
    "among",
    "and",
    "or",
)
RELATIONS = {
    tuple(phrase.split()): tuple(tuple(opposite.split()) for opposite in opposites)
    for phrase, opposites in RELATION_OPPOSITES.items()
}
# Phrases read as one relation, without an opposite: "a cupcake with a candle on top" keeps its "top".
KEPT_RELATIONS = ("on top", "side by side", "each other")
RELATIONS |= {tuple(phrase.split()): () for phrase in SYMMETRIC_RELATIONS + KEPT_RELATIONS if " " in phrase}
LONGEST_RELATION = max(map(len, RELATIONS))
RELATION_STARTS = frozenset(unit[0] for unit in RELATIONS)
# "made out of wood" is not a way out.
NOT_RELATION_AFTER = {("out", "of"): frozenset("made carved built cut".split())}

# Places in the frame: "at the top left", "in the background"; inside one, these words become their opposite.
PLACE_PREPOSITIONS = frozenset("at on in to from".split())
PLACE_WORDS = frozenset(
    "top bottom middle center centre left right upper lower corner side front back foreground background far".split()
)
PLACE_OPPOSITES = {
    "top": "bottom",
    "bottom": "top",
    "upper": "lower",
    "lower": "upper",
    "front": "back",
    "back": "front",
    "foreground": "background",
    "background": "foreground",
}

# Words that end a noun phrase or stand between two.
DETERMINERS = frozenset(
    "a an the this that these those some any each every his her its their my your our no another both all several "
    "many few".split()
)
BE_VERBS = frozenset("is are was were be been being looks look appears appear seems seem".split())
PREPOSITIONS = frozenset(
    "of in on at to from with without by near next beside besides behind above below under over into onto through "
    "across along around between among against toward towards inside outside underneath beneath upon off up down out "
    "about like during after before past via atop within throughout beyond amid alongside opposite for than as".split()
)
FUNCTION_WORDS = (
    PREPOSITIONS
    | BE_VERBS
    | frozenset(
        "while and or but so then nor he she it they them him we i you who which what there here has have had do does "
        "did can could will would may might should must am get gets got very also together nearby away just still "
        "only really quite too well where when how not alone".split()
    )
)
# Verb forms that are not "-ing" or "-ed": they end a noun phrase unless a determiner or an attribute comes just
# before ("two dogs sit", but "a watch").
FINITE_VERBS = frozenset(
    "sit sits stand stands lie lies lay lays rest rests run runs walk walks ride rides hold holds carry carries eat "
    "eats drink drinks play plays watch watches wait waits fly flies jump jumps sleep sleeps drive drives pull pulls "
    "push pushes throw throws catch catches kick kicks hit hits swing swings wear wears use uses read reads talk "
    "talks pose poses smile smiles sat stood ran rode held ate drank flew threw caught wore made make makes take "
    "takes took stuck hung built broken lit set spread thrown torn worn written drawn grown hidden laid lain eaten "
    "fallen frozen given seen taken shown sold bought brought kept".split()
)
# Adjectives outside the attribute kinds: before a noun they describe it, unlike a noun before a noun ("a calm
# lake", not "a fire hydrant"), so the noun may still be replaced.
ADJECTIVES = frozenset(
    "calm snowy grassy rocky sandy muddy windy rainy foggy bright dark round colorful colourful striped spotted "
    "fluffy furry cute happy sad pretty beautiful fresh ripe cooked raw hot cold warm shiny modern antique narrow "
    "wide quiet tired curious hungry cozy messy neat tidy fancy plain".split()
)
# Nouns ending in "-ing" or "-ed" (other words that do are verbs or participles).
NOUNS_LIKE_VERBS = frozenset(
    "building buildings ceiling painting paintings clothing wedding evening morning railing railings ring rings thing "
    "things string swing swings wing wings icing frosting topping toppings awning parking pudding dumpling dumplings "
    "stocking stockings crossing dressing seating king spring bed red shed sled sheds beds speed seed weed".split()
)
