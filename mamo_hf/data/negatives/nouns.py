"""The nouns the caption negatives know: their category, what may replace them, and their plural.

A noun is replaced only by a noun of its own kind ("dog" by "cat", "car" by "bus") and never by a synonym: the words
joined by "|" are one group ("bike|bicycle", "couch|sofa"), and a group is replaced by the first word of another
group. Nouns that name a whole class or overlap others ("person", "bird", "building", "table") are known, for their
category, but never replaced nor used as replacements.
"""

from dataclasses import dataclass

# category/kind → the kind's synonym groups (words joined by "|"); a kind's words replace one another.
REPLACEABLE_NOUNS = {
    "shape/shape": "circle square triangle diamond",
    "person/adult": "man|guy|gentleman woman|lady",
    "person/child": "boy girl",
    "animal/pet": "dog|puppy|pup cat|kitten|kitty rabbit|bunny",
    "animal/farm": "horse|pony|stallion|mare cow|cattle|bull|calf|ox sheep|lamb goat",
    "animal/wild": "elephant giraffe zebra bear lion tiger",
    "vehicle/road": "car|taxi|cab|sedan|suv bus truck|lorry|pickup van",
    "vehicle/two_wheeler": "motorcycle|motorbike bicycle|bike scooter|moped",
    "vehicle/aircraft": "airplane|plane|aeroplane|jet|airliner|aircraft helicopter",
    "board/board": "skateboard surfboard snowboard",
    "sports/ball": "frisbee ball",
    "food/sliced": "pizza cake|cupcake",
    "food/handheld": "sandwich|burger|hamburger|cheeseburger|sub donut|doughnut",
    "food/fruit": "apple banana orange strawberry lemon|lime grape pear peach",
    "food/vegetable": "carrot tomato potato onion cucumber",
    "furniture/seat": "chair|armchair couch|sofa|loveseat|settee bench bed stool",
    "tableware/drinkware": "cup|mug|glass bottle",
    "tableware/dishware": "plate|dish|platter bowl tray",
    "tableware/cutlery": "fork knife spoon",
    "electronics/device": "laptop|computer|notebook phone|cellphone|smartphone tv|television|monitor remote",
    "appliance/kitchen": "refrigerator|fridge oven|stove microwave",
    "appliance/bathroom": "sink toilet bathtub|tub",
    "clothing/top": "shirt|t-shirt|tshirt|blouse jacket|coat|parka|raincoat sweater|sweatshirt|hoodie|jumper vest",
    "clothing/headwear": "hat|cap|beanie helmet",
    "clothing/legwear": "pants|jeans|trousers shorts",
    "clothing/dress": "skirt dress",
    "room/room": "kitchen bathroom|restroom bedroom office classroom",
    "place/ground": "beach field|meadow street|road|sidewalk|highway|pavement",
    "nature/water": "ocean|sea lake|pond river|stream|creek",
    "building/building": "house|cottage church|cathedral barn tower",
    "reading/reading": "book newspaper magazine",
}
FIXED_NOUNS = {
    "shape": "star shape object rectangle",
    "person": "person child kid baby toddler player skier surfer skateboarder snowboarder rider tourist chef cook "
    "worker officer crowd family couple friend student adult teenager teen athlete batter catcher pitcher umpire "
    "passenger pedestrian policeman",
    "animal": "bird pigeon seagull gull duck goose parrot swan owl animal pet",
    "vehicle": "train tram boat ship sailboat canoe kayak yacht ferry vehicle",
    "tableware": "vase jar pot pan",
    "electronics": "keyboard mouse camera screen",
    "furniture": "table desk shelf cabinet counter",
    "building": "building skyscraper structure wall fence bridge",
    "room": "room",
    "nature": "tree bush grass sky snow sand water cloud mountain hill leaf flower plant rock forest woods sun moon",
    "food": "broccoli soup salad pasta spaghetti rice bread cheese meat fruit food milk coffee tea wine beer juice",
    "signal": "light",
    "clothing": "uniform suit outfit",
    "picture": "photo photograph picture image shot film",
    "textile": "rug carpet mat blanket towel pillow cushion curtain",
    "bag": "bag backpack suitcase purse handbag",
    "container": "box crate basket bucket barrel",
    "other": "umbrella kite clock sign",
}
# Two-word nouns whose last word alone would be another thing.
COMPOUND_CATEGORIES = {("hot", "dog"): "food", ("teddy", "bear"): "toy"}
PLURAL_ONLY = frozenset("pants jeans trousers shorts".split())
SAME_PLURAL = frozenset("sheep cattle deer".split())
# Nouns without a plural of their own: never counted, swapped or replaced.
MASS_NOUNS = frozenset(
    "broccoli soup salad pasta spaghetti rice bread cheese meat fruit food milk coffee tea wine beer juice grass "
    "snow sand water sky".split()
)
IRREGULAR_PLURALS = {
    "man": "men",
    "woman": "women",
    "gentleman": "gentlemen",
    "policeman": "policemen",
    "child": "children",
    "person": "people",
    "foot": "feet",
    "mouse": "mice",
    "goose": "geese",
    "knife": "knives",
    "leaf": "leaves",
    "shelf": "shelves",
    "calf": "calves",
    "potato": "potatoes",
    "tomato": "tomatoes",
    "ox": "oxen",
}
# Kinds of nouns the actions and relations ask for.
RIDEABLE = frozenset("horse pony stallion mare elephant camel donkey".split())
SURFACES = frozenset(
    "table desk bench chair armchair couch sofa loveseat bed stool shelf counter car truck bus van blanket towel rug "
    "carpet mat box crate".split()
)
ANIMATE = frozenset({"person", "animal"})
# Categories whose nouns may exchange places or stand around a relation exchanged ("a dog behind a cat"); people,
# places and scenery may not ("a field of a cloudy sky under yellow flowers").
SWAPPABLE = frozenset(
    "shape animal vehicle board sports food furniture tableware electronics appliance clothing reading".split()
)
# Categories whose nouns may exchange places across kinds ("a dog" and "a horse", "a car" and "a bike").
FREELY_SWAPPABLE = frozenset({"shape", "animal", "vehicle"})
# Things around which a relation is not inverted: everything is under the sky.
BACKDROPS = frozenset("sky sun moon cloud clouds".split())
# Nouns of these kinds keep their place after these words: "in a bowl" cannot become "in a plate", nor "in a field"
# "in a beach".
KEPT_AFTER = {
    "dishware": frozenset("in into on onto inside".split()),
    "ground": frozenset("in into at of down up through inside".split()),
}
# "a flock of sheep" cannot become "a flock of cows": the collective noun belongs to the animal.
COLLECTIVES = frozenset("flock flocks herd herds pack packs swarm litter pride school".split())
# Nouns of these kinds keep their place before these words: "a field of flowers".
KEPT_BEFORE = {"ground": frozenset({"of"})}
# Children have no age to change ("an old girl"), and a man or a woman is not replaced in a caption that says "his",
# "her" or "beard".
YOUTHFUL = frozenset("boy boys girl girls child children kid kids baby babies toddler toddlers".split())
GENDER_CUES = frozenset(
    "he she him his her hers himself herself beard bearded mustache moustache bride groom pregnant".split()
)
SINGULAR_DETERMINERS = frozenset("a an one this that each every another".split())


def plural(noun: str) -> str:
    """The plural of a singular English noun ("bus" → "buses", "puppy" → "puppies", "man" → "men")."""
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun in PLURAL_ONLY or noun in SAME_PLURAL or noun in MASS_NOUNS:
        return noun
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in set("aeiou"):
        return noun[:-1] + "ies"
    return noun + "s"


@dataclass(frozen=True)
class Noun:
    """A known noun: `singular` and `plural` forms, `category`, and, for a replaceable noun, its `kind` and synonym
    `group` (the index of its group within the kind); `plural_form` says which form the word was."""

    singular: str
    plural: str
    category: str
    kind: str | None
    group: int | None
    plural_form: bool

    def form(self, plural_form: bool) -> str:
        return self.plural if plural_form else self.singular


def _index() -> tuple[dict[str, Noun], dict[str, list[list[str]]]]:
    """Every form of every known noun, and each replaceable kind's synonym groups (singular forms)."""
    nouns, groups_of_kind = {}, {}
    for key, text in REPLACEABLE_NOUNS.items():
        category, kind = key.split("/")
        groups_of_kind[kind] = [group.split("|") for group in text.split()]
        for number, group in enumerate(groups_of_kind[kind]):
            for word in group:
                nouns[plural(word)] = Noun(word, plural(word), category, kind, number, True)
                nouns[word] = Noun(word, plural(word), category, kind, number, False)
    for category, text in FIXED_NOUNS.items():
        for word in text.split():
            nouns.setdefault(plural(word), Noun(word, plural(word), category, None, None, True))
            nouns.setdefault(word, Noun(word, plural(word), category, None, None, False))
    del nouns["glasses"]  # drinking glasses or spectacles: neither is safe to replace
    return nouns, groups_of_kind


NOUNS, GROUPS_OF_KIND = _index()
