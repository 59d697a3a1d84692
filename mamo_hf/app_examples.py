"""What `mamo-hf app` shows before anyone types: example inputs from the image folder, default texts that the model's
tokenizer knows, and a warning naming the words it does not know.

With `--images FOLDER`, the first images of the folder become example rows of the Match, Zero-shot and Grad-CAM tabs
(and the first row fills the inputs when the page opens). When a caption file sits in the folder or next to it
(`captions.json`, a JSON list of `{"image", "caption"}` with image paths relative to the file's folder, as
`mamo-hf demo-data` writes it: `demo-data/captions.json` next to `demo-data/images/`), each image comes with its own
caption and a hard negative of it (two objects' attributes exchanged, `mamo_hf.data.CaptionNegatives`) for Match, and
a referring phrase for its first object that the caption names alone ("the red circle") for Grad-CAM. Zero-shot
labels are the demo's colours, put into the first prompt template whose words the tokenizer knows.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from .data.demo import COLOURS
from .data.negatives import CaptionNegatives, read_caption
from .data.negatives.english import split_words
from .search import image_files, unknown_words

CAPTIONS_FILE = "captions.json"
# Zero-shot prompt templates in order of preference: the first whose words the tokenizer knows is the default
# (CLIP's "a photo of a {}" for a BERT vocabulary; "there is a {}" for the demo's, which has no "photo").
TEMPLATES = ("a photo of a {}", "there is a {}", "a {}", "{}")
DEFAULT_LABELS = ", ".join(COLOURS)
DEFAULT_CAPTIONS = ("there is a red circle", "there is a blue square")
DEFAULT_PHRASE = "the red circle"
MAX_EXAMPLES = 4

_SWAPS, _CHANGES = CaptionNegatives(1, ("swap_attributes",)), CaptionNegatives(1)


@dataclass(frozen=True)
class AppExamples:
    """Example rows per tab, each `[image path, text, ...]` in the order of the tab's inputs: `match` (captions, one
    per line), `zero_shot` (labels, template) and `gradcam` (phrase); empty without an image folder."""

    match: list[list[str]]
    zero_shot: list[list[str]]
    gradcam: list[list[str]]


def default_template(tokenizer) -> str:
    """The first of `TEMPLATES` all of whose words `tokenizer` knows (the bare "{}" at worst)."""
    return next(template for template in TEMPLATES if not unknown_words(template.replace("{}", " "), tokenizer))


def vocabulary_note(tokenizer, *texts: str) -> str:
    """A Markdown warning naming the words of `texts` (captions, labels, templates, phrases; a template's "{}" aside)
    that `tokenizer` reads as [UNK] or drops, or "" when it knows them all."""
    words = (word for text in texts for word in unknown_words((text or "").replace("{}", " "), tokenizer))
    unknown = list(dict.fromkeys(words))
    if not unknown:
        return ""
    return (
        f"⚠️ Unknown to the model's tokenizer (read as [UNK]): **{', '.join(unknown)}**. The model cannot match "
        "these words to anything; use words of its training captions."
    )


def folder_captions(folder: str | Path) -> dict[str, str]:
    """`image path relative to folder → caption` from the `captions.json` in `folder` or in its parent (the first
    caption of an image); {} when there is none, or it cannot be read as a list of `{"image", "caption"}`."""
    folder = Path(folder).resolve()
    for candidate in (folder / CAPTIONS_FILE, folder.parent / CAPTIONS_FILE):
        if candidate.is_file():
            try:
                records = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError):
                return {}
            return _captions_in(records if isinstance(records, list) else [], candidate.parent, folder)
    return {}


def _captions_in(records: list, root: Path, folder: Path) -> dict[str, str]:
    """The captions of the records whose image (relative to `root`) lies under `folder`, by path relative to it."""
    captions = {}
    for record in records:
        if (
            isinstance(record, dict)
            and isinstance(record.get("image"), str)
            and isinstance(record.get("caption"), str)
        ):
            path = (root / record["image"]).resolve()
            if path.is_relative_to(folder):
                captions.setdefault(path.relative_to(folder).as_posix(), record["caption"])
    return captions


def caption_negative(caption: str) -> str | None:
    """A hard negative of `caption`: two objects' attributes (or places) exchanged, or else one attribute or thing
    changed (`CaptionNegatives`); None when no rule applies."""
    negatives = _SWAPS(caption) or _CHANGES(caption)
    return negatives[0] if negatives else None


def referring_phrase(caption: str) -> str | None:
    """ "the red circle": the colour and noun of the first object of `caption` that no other object of it shares
    (the noun alone for an object without a colour); None when the caption names no such object."""
    read = read_caption(tuple(split_words(caption)))
    names = []
    for index, phrase in enumerate(read.phrases):
        colours = [
            read.lower[attribute.index]
            for attribute in read.attributes
            if attribute.phrase == index and attribute.kind == "colour" and attribute.role == "modifier"
        ]
        names.append(" ".join([*colours, read.lower[phrase.head]]))
    unique = [name for name in names if names.count(name) == 1]
    return f"the {unique[0]}" if unique else None


def app_examples(folder: str | Path | None, tokenizer, limit: int = MAX_EXAMPLES) -> AppExamples:
    """The example rows of the first `limit` images of `folder` (those of its caption file first, see the module's
    docstring); the default texts where an image has no caption."""
    if folder is None:
        return AppExamples([], [], [])
    folder, template = Path(folder), default_template(tokenizer)
    files, captions = image_files(Path(folder)), folder_captions(folder)
    chosen = [path for path in captions if path in files][:limit] or list(files)[:limit]
    rows = AppExamples([], [], [])
    for relative in chosen:
        image, caption = str(folder / relative), captions.get(relative)
        texts = [caption, caption_negative(caption)] if caption else list(DEFAULT_CAPTIONS)
        rows.match.append([image, "\n".join(text for text in texts if text)])
        rows.zero_shot.append([image, DEFAULT_LABELS, template])
        rows.gradcam.append([image, (caption and referring_phrase(caption)) or DEFAULT_PHRASE])
    # A phrase picks one object out of several: scenes whose caption names two or more come first for Grad-CAM.
    rows.gradcam.sort(key=lambda row: _objects_named(captions.get(Path(row[0]).relative_to(folder).as_posix())) < 2)
    return rows


def _objects_named(caption: str | None) -> int:
    """How many noun phrases `caption` has (0 for none)."""
    return len(read_caption(tuple(split_words(caption))).phrases) if caption else 0


__all__ = [
    "AppExamples",
    "app_examples",
    "caption_negative",
    "default_template",
    "folder_captions",
    "referring_phrase",
    "vocabulary_note",
]
