"""Text search of one's own image folder: an embedded index on disk, kept up to date incrementally.

`update_index` embeds every image under a folder with a MAMO model's ITC image encoder and keeps the L2-normalised
features in one safetensors file (the image list, with each file's size and modification time, in its metadata).
Run again, it embeds only the images that are new or changed, drops the deleted ones and keeps the rest; a different
model (its image projection changed) re-embeds everything. The file is replaced atomically, so an interrupted update
leaves the previous index whole. `search_index` ranks the indexed images for a text by ITC cosine similarity and can
re-rank the best ones by the ITM head's match probability, as retrieval does (docs/method.md §5 "Downstream tasks").

    mamo-hf index photos/ --model mamo-demo
    mamo-hf search photos/ "a large red circle at the top left" --model mamo-demo --rerank 10
"""

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .data.records import DEFAULT_MAX_IMAGE_PIXELS, load_image
from .errors import first_line
from .evaluation.retrieval import base_and_itm_head, encode_corpus, itm_scores

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
INDEX_NAME = ".mamo-index.safetensors"
# ITM probabilities closer than this are a tie: re-ranking keeps the ITC order (`itm_separates`).
ITM_TIE = 0.01
FORMAT_VERSION = "1"


@dataclass
class IndexUpdate:
    """What an update did: images `added`, `updated` (changed on disk), `removed` (gone), `unchanged`, and the
    files that could not be read as images (`unreadable`: path → reason), which are left out and tried again next
    time."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)
    model_changed: bool = False

    def summary(self, index_path: Path) -> str:
        total = self.added + self.updated + self.unchanged
        line = (
            f"Indexed {total} images in {index_path}: {self.added} added, {self.updated} updated, {self.removed} "
            f"removed, {self.unchanged} unchanged"
        )
        if self.model_changed:
            line += " (another model than the index's: every image embedded again)"
        if self.unreadable:
            first, reason = next(iter(self.unreadable.items()))
            line += f"; {len(self.unreadable)} unreadable, left out (the first: {first}: {reason})"
        return line + "."


def default_index_path(folder: str | Path) -> Path:
    return Path(folder) / INDEX_NAME


def image_files(folder: Path) -> dict[str, tuple[int, int]]:
    """`relative path → (size, modification time in ns)` of the image files under `folder` (hidden ones left out)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not relative.as_posix().startswith("."):
            status = path.stat()
            found[relative.as_posix()] = (status.st_size, status.st_mtime_ns)
    return found


def model_fingerprint(model) -> str:
    """A short hash of the image projection's weights: the same model gives the same features."""
    base, _ = base_and_itm_head(model)
    digest = hashlib.sha256()
    for tensor in base.image_projection.state_dict().values():
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _checked_index_path(folder: Path, index_path: str | Path | None) -> Path:
    """The index file's path (by default in `folder`); a `ValueError` for a folder or a path in a missing folder."""
    index_path = Path(index_path) if index_path is not None else default_index_path(folder)
    if index_path.is_dir():
        raise ValueError(f"{index_path} is a folder: give the index's file path (e.g. {index_path / INDEX_NAME}).")
    if not index_path.parent.is_dir():
        what = "is a file, not a folder" if index_path.parent.exists() else "does not exist"
        raise ValueError(f"{index_path}: {index_path.parent} {what}.")
    return index_path


def read_index(index_path: Path) -> tuple[dict, torch.Tensor]:
    """The index's metadata (`fingerprint`, `entries`: `[path, size, mtime_ns]` per row) and features `[N, D]`.

    Raises:
        ValueError: naming the file, when it is not an index this module wrote.
    """
    try:
        with safe_open(str(index_path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            features = handle.get_tensor("features")
        if metadata.get("format") != FORMAT_VERSION:
            raise ValueError("no index format version")
        return {"fingerprint": metadata["fingerprint"], "entries": json.loads(metadata["entries"])}, features
    except Exception as error:  # safetensors raises its own kinds for a file that is not one
        raise ValueError(
            f"{index_path}: not a MAMO image index ({error}); give the file `mamo-hf index` wrote, or a new path."
        ) from None


def write_index(index_path: Path, fingerprint: str, entries: list[list], features: torch.Tensor) -> None:
    """Write the index to a temporary file beside `index_path`, then put it in place in one rename.

    Raises:
        OSError: naming the file and the system's reason, when it cannot be written (a read-only folder, a full
            disk); the previous index is left as it was.
    """
    metadata = {"format": FORMAT_VERSION, "fingerprint": fingerprint, "entries": json.dumps(entries)}
    staging = index_path.with_name(f"{index_path.name}.{os.getpid()}.tmp")  # one per writer: two never share it
    try:
        save_file({"features": features.contiguous()}, str(staging), metadata=metadata)
        os.replace(staging, index_path)
    except (OSError, SafetensorError) as error:  # SafetensorError: safetensors' own kind for a failed write
        reason = getattr(error, "strerror", None) or _system_reason(error)
        raise OSError(
            f"{index_path}: could not write the index ({reason}); the previous index is unchanged: make the folder "
            "writable or free space."
        ) from None
    finally:
        staging.unlink(missing_ok=True)


def _system_reason(error: Exception) -> str:
    """The system's words in safetensors' error ("I/O error: File too large (os error 27)" → "File too large")."""
    found = re.search(r"I/O error: (.+?)(?: \(os error \d+\))?$", first_line(error))
    return found.group(1) if found else first_line(error)


def image_features(model, processor, images: list) -> torch.Tensor:
    """The L2-normalised ITC features `[len(images), projection_dim]` of PIL images, on the CPU."""
    base, _ = base_and_itm_head(model)
    parameter = next(base.parameters())
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"].to(parameter.device, parameter.dtype)
    return base.get_image_features(pixel_values).pooler_output.float().cpu()


def text_features(model, processor, texts: list[str]) -> torch.Tensor:
    """The L2-normalised ITC features `[len(texts), projection_dim]` of texts, on the CPU."""
    base, _ = base_and_itm_head(model)
    tokens = processor(text=texts, padding="longest", truncation=True, return_tensors="pt")
    device = next(base.parameters()).device
    input_ids, attention_mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
    return base.get_text_features(input_ids, attention_mask=attention_mask).pooler_output.float().cpu()


def read_image(path: Path) -> Image.Image:
    """An indexed image, decoded as training decodes one: an image above `DEFAULT_MAX_IMAGE_PIXELS` is decoded at a
    reduced size (JPEG) or refused, never decoded whole (a 12,000 × 12,000 PNG of a few hundred kilobytes would take
    gigabytes)."""
    return load_image(str(path), max_pixels=DEFAULT_MAX_IMAGE_PIXELS)


def _readable_images(folder: Path, paths: list[str], update: IndexUpdate) -> tuple[list[str], list[Image.Image]]:
    kept, images = [], []
    for path in paths:
        try:
            images.append(read_image(folder / path))
            kept.append(path)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            update.unreadable[path] = first_line(error)
    return kept, images


@torch.no_grad()
def update_index(
    folder: str | Path, model, processor, index_path: str | Path | None = None, batch_size: int = 32
) -> IndexUpdate:
    """Bring the index of the images under `folder` up to date with the folder and the model (see the module's
    docstring); returns what changed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder.")
    index_path = _checked_index_path(folder, index_path)
    fingerprint, on_disk = model_fingerprint(model), image_files(folder)
    if not on_disk:
        raise ValueError(f"{folder}: no image files under it ({', '.join(IMAGE_SUFFIXES)}).")
    known, known_features, update = {}, torch.zeros(0, 0), IndexUpdate()
    if index_path.exists():
        metadata, known_features = read_index(index_path)
        update.model_changed = metadata["fingerprint"] != fingerprint
        if not update.model_changed:
            known = {path: (row, (size, mtime)) for row, (path, size, mtime) in enumerate(metadata["entries"])}
    keep = [path for path in on_disk if path in known and known[path][1] == on_disk[path]]
    to_embed = [path for path in on_disk if path not in keep]
    embedded, pieces = [], [known_features[[known[path][0] for path in keep]]] if keep else []
    for start in range(0, len(to_embed), batch_size):
        paths, images = _readable_images(folder, to_embed[start : start + batch_size], update)
        if images:
            pieces.append(image_features(model, processor, images))
            embedded += paths
    update.unchanged, update.removed = len(keep), len(set(known) - set(keep) - set(embedded))
    update.updated = sum(path in known for path in embedded)
    update.added = len(embedded) - update.updated
    # Rewritten whenever an entry changes state: added, re-embedded, gone, or now unreadable (no longer served).
    if update.added or update.updated or update.removed or update.model_changed or not index_path.exists():
        features = torch.cat(pieces) if pieces else torch.zeros(0, base_and_itm_head(model)[0].config.projection_dim)
        write_index(index_path, fingerprint, [[path, *on_disk[path]] for path in keep + embedded], features)
    return update


@dataclass
class SearchHit:
    """One image found: its `path` (under the searched folder), ITC cosine `similarity` and, when re-ranked, the
    ITM match probability `itm_score`."""

    path: str
    similarity: float
    itm_score: float | None = None


@torch.no_grad()
def search_index(
    folder: str | Path,
    text: str,
    model,
    processor,
    index_path: str | Path | None = None,
    top_k: int = 5,
    rerank: int = 0,
) -> list[SearchHit]:
    """The `top_k` indexed images that best match `text`: by ITC cosine similarity, or, with `rerank = k`, the `k`
    best by ITC re-ordered by ITM match probability (needs a model with an ITM head), best first.

    Raises:
        ValueError: for an index missing, unreadable, or built with another model.
    """
    folder = Path(folder)
    index_path = _checked_index_path(folder, index_path)
    if not index_path.exists():
        option = "" if index_path == default_index_path(folder) else f" --index {index_path}"
        raise ValueError(f"{index_path}: no index; run `mamo-hf index {folder}{option}` first.")
    metadata, features = read_index(index_path)
    if metadata["fingerprint"] != model_fingerprint(model):
        raise ValueError(f"{index_path}: built with another model; run `mamo-hf index {folder}` with this one.")
    if rerank and base_and_itm_head(model)[1] is None:
        raise ValueError(f"re-ranking needs a model with an ITM head, got {type(model).__name__}.")
    rows = [row for row, entry in enumerate(metadata["entries"]) if is_current(folder, entry)]
    paths = [metadata["entries"][row][0] for row in rows]
    similarity = features[rows] @ text_features(model, processor, [text])[0] if rows else torch.zeros(0)
    order = similarity.argsort(descending=True).tolist()
    hits = [SearchHit(paths[row], similarity[row].item()) for row in order]
    if rerank:
        hits = _reranked(folder, text, model, processor, hits, rerank)
    return hits[:top_k]


def is_current(folder: Path, entry: list) -> bool:
    """Whether an index entry `[path, size, mtime_ns]` still describes its file: there, readable, unchanged (a
    changed or corrupted file is served again only after `update_index` embeds it anew)."""
    path = folder / entry[0]
    try:
        status = path.stat()
    except OSError:
        return False
    return (status.st_size, status.st_mtime_ns) == tuple(entry[1:]) and os.access(path, os.R_OK)


def _reranked(folder: Path, text: str, model, processor, hits: list[SearchHit], rerank: int) -> list[SearchHit]:
    """The `rerank` best hits by ITC re-ordered by ITM match probability, then the rest; a hit whose image cannot
    be read any more is left out."""
    best, images = [], []
    for hit in hits:
        if len(best) == rerank:
            break
        try:
            images.append(read_image(folder / hit.path))
            best.append(hit)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    if not best:
        return []
    corpus = encode_corpus(model, processor, images, [text])
    scores = itm_scores(model, corpus, torch.arange(len(best)), torch.zeros(len(best), dtype=torch.long))
    for hit, score in zip(best, scores.tolist()):
        hit.itm_score = score
    if not itm_separates(best):  # the ITM head cannot tell them apart: its order would be noise
        return best + hits[hits.index(best[-1]) + 1 :]
    return sorted(best, key=lambda hit: -hit.itm_score) + hits[hits.index(best[-1]) + 1 :]


def itm_separates(hits: list[SearchHit]) -> bool:
    """Whether the ITM scores of re-ranked hits differ by more than `ITM_TIE` (an untrained or collapsed ITM head
    gives every pair nearly the same probability, and ordering by it would be ordering by noise)."""
    scores = [hit.itm_score for hit in hits if hit.itm_score is not None]
    return len(scores) > 1 and max(scores) - min(scores) > ITM_TIE


def unknown_words(text: str, tokenizer) -> list[str]:
    """The words of `text` that `tokenizer` reads as [UNK] or drops (BERT's drops emoji): a model cannot match them
    to anything."""
    words = text.split()
    pieces = tokenizer(words, add_special_tokens=False)["input_ids"] if words else []
    return [word for word, ids in zip(words, pieces) if not ids or tokenizer.unk_token_id in ids]


__all__ = [
    "IndexUpdate",
    "SearchHit",
    "default_index_path",
    "is_current",
    "itm_separates",
    "search_index",
    "unknown_words",
    "update_index",
]
