"""Compositional hard negatives from any caption, by rules: the same words bound differently, or one thing changed.

A model that reads a caption as a bag of words cannot tell "a red circle left of a blue square" from "a blue circle
left of a red square". Minimal pairs teach the difference, but a user's captions come without them; these rules
make them from the captions themselves, in the spirit of NegCLIP and SugarCrepe (swap, replace), with lexicons and
no parser or model (`reading`), so they cost about a tenth of a millisecond per caption. Each family changes a caption
in one way:

- `swap_attributes`: two different colours, sizes, materials, ages or states of two noun phrases, two counts, or two
  places in the frame exchange places ("a red car next to a blue bus" → "a blue car next to a red bus", "at the top
  left" ↔ "at the bottom right");
- `replace_attribute`: one attribute becomes another of its kind that fits its noun ("a black dog" → "a brown
  dog", "a wooden bench" → "a metal bench", "a small cat" → "a large cat", "an empty glass" → "a full glass");
- `replace_count`: a count becomes the next or the previous one, with the noun's number ("two dogs" → "three
  dogs", "one dog is" ↔ "two dogs are");
- `swap_objects`: the nouns of two phrases of one category exchange places ("a black cat and a white dog" → "a
  black dog and a white cat");
- `replace_object`: a noun becomes another of its kind ("a dog on a couch" → "a cat on a couch");
- `replace_action`: a verb becomes one that cannot happen with it ("a man riding a horse" → "a man feeding a
  horse", "a dog sitting" → "a dog standing");
- `swap_relation`: a relation becomes its opposite as a whole ("on top of" → "under", "in front of" → "behind",
  "left of" → "right of"), a side or a place in the frame becomes the other ("on the left" → "on the right", "at
  the top left" → "at the bottom left"), or the phrases around a directed relation exchange places ("a dog behind
  a cat" → "a cat behind a dog");
- `shuffle` (opt-in, not in `DEFAULT_FAMILIES`): the words in another order.

What they never do, because the result would still be true: exchange the phrases around a symmetric relation or a
coordination ("a dog next to a cat", "a man and a woman", "a red and white bus"), replace a word by a synonym
("small"/"little", "couch"/"sofa", "bike"/"bicycle"), read a fruit as a colour ("an orange") or a glass of water as
a material, invert "left" the verb ("the man left the room"). A negative's articles agree ("a orange" never
appears) and a demo caption's negatives use only the demo's words.

`CaptionNegatives` draws up to `k` distinct negatives per caption from the families, deterministically from a key
(the dataset item's `sample_key`): the same caption and key give the same negatives in every process and on resume.
A negative never equals its caption; a caption with nothing a family can change gets fewer negatives, or none.
The lexicons are English; words outside them are left alone.
"""

from .generator import (
    DEFAULT_FAMILIES,
    FAMILIES,
    CaptionNegatives,
    replace_action,
    replace_attribute,
    replace_count,
    replace_object,
    shuffle,
    swap_attributes,
    swap_objects,
    swap_relation,
)
from .lexicon import ATTRIBUTE_KINDS, RELATION_OPPOSITES, SYMMETRIC_RELATIONS
from .nouns import FIXED_NOUNS, REPLACEABLE_NOUNS
from .reading import read_caption

__all__ = [
    "ATTRIBUTE_KINDS",
    "DEFAULT_FAMILIES",
    "FAMILIES",
    "FIXED_NOUNS",
    "RELATION_OPPOSITES",
    "REPLACEABLE_NOUNS",
    "SYMMETRIC_RELATIONS",
    "CaptionNegatives",
    "read_caption",
    "replace_action",
    "replace_attribute",
    "replace_count",
    "replace_object",
    "shuffle",
    "swap_attributes",
    "swap_objects",
    "swap_relation",
]
