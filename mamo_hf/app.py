"""`mamo-hf app MODEL`: an interactive demo in the browser (Gradio), as models on the Hub have.

Four tabs, each a thin view over the package's own functions (which the tests check without a browser):

- **Match**: an image against captions, one per line: ITC cosine similarity, ITC probability over the captions and
  the ITM match probability of each (`match_scores`).
- **Zero-shot**: an image against labels put into a prompt template, ranked by ITC (`zero_shot_classify`).
- **Grad-CAM**: where in the image a phrase is, the Grad-CAM heat map of its ITM score (`phrase_heatmap`).
- **Search** (with `--images FOLDER`): the folder's best images for a text, from its incremental index, ITC then ITM
  re-ranking (`mamo_hf.search`).

Gradio is an optional extra: `pip install "mamo-hf[app]"`.
"""

from pathlib import Path

import torch
from PIL import Image

from .evaluation.grounding import gradcam_heatmaps, heatmap_overlay
from .evaluation.zero_shot import zero_shot_classify
from .search import search_index, update_index

APP_EXTRA = 'pip install "mamo-hf[app]"'


@torch.no_grad()
def match_scores(model, processor, image: Image.Image, captions: list[str]) -> list[dict]:
    """For each caption: `caption`, ITC `cosine` similarity with the image, `itc_probability` (softmax over the
    captions of `cosine / τ`) and `itm_probability` (the ITM head's match probability), in the captions' order."""
    images = [image.convert("RGB")] * len(captions)
    inputs = processor(images=images, text=captions, padding=True, truncation=True, return_tensors="pt")
    outputs = model(**inputs, return_loss=False)
    columns = {
        "cosine": (outputs.image_embeds[0] @ outputs.text_embeds.T).tolist(),
        "itc_probability": outputs.logits_per_image[0].softmax(dim=-1).tolist(),
        "itm_probability": outputs.itm_scores.tolist(),
    }
    return [
        {"caption": caption, **{name: values[index] for name, values in columns.items()}}
        for index, caption in enumerate(captions)
    ]


def phrase_heatmap(model, processor, image: Image.Image, phrase: str) -> Image.Image:
    """The image with the Grad-CAM heat map of `phrase`'s ITM score drawn over it (docs/method.md §5 "Downstream
    tasks")."""
    image = image.convert("RGB")
    inputs = processor(images=[image], text=[phrase], return_tensors="pt")
    heatmap = gradcam_heatmaps(model, inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"])[0]
    return heatmap_overlay(image, heatmap)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def build_app(model, processor, image_folder: str | Path | None = None, title: str = "MAMO"):
    """The Gradio `Blocks` of the demo for a `MamoForImageTextRetrieval` and its processor; `image_folder` adds the
    Search tab (its index is brought up to date when the app starts)."""
    import gradio as gr

    model.eval()
    if image_folder is not None:
        update_index(image_folder, model, processor)
    with gr.Blocks(title=title) as app:
        gr.Markdown(f"# {title}\nMasked multimodal modeling (MAMO) for vision-language: ITC, ITM and Grad-CAM.")
        for tab in (_match_tab, _zero_shot_tab, _gradcam_tab):
            tab(gr, model, processor)
        if image_folder is not None:
            _search_tab(gr, model, processor, image_folder)
    return app


def _match_tab(gr, model, processor) -> None:
    """Match: an image against captions, one per line, by ITC and ITM."""

    def match(image, captions_text):
        captions = _lines(captions_text)
        if image is None or not captions:
            raise gr.Error("Give an image and at least one caption (one per line).")
        rows = match_scores(model, processor, image, captions)
        return [[row["caption"], *(round(row[name], 4) for name in ("cosine", "itc_probability", "itm_probability"))]
                for row in rows]  # fmt: skip

    with gr.Tab("Match"):
        with gr.Row():
            match_image = gr.Image(type="pil", label="Image", elem_id="match-image")
            captions = gr.Textbox(lines=4, label="Captions, one per line", elem_id="match-captions")
        match_button = gr.Button("Score", elem_id="match-button")
        headers = ["caption", "ITC cosine", "ITC probability", "ITM probability"]
        table = gr.Dataframe(headers=headers, label="Scores", elem_id="match-table", interactive=False)
        match_button.click(match, [match_image, captions], table)


def _zero_shot_tab(gr, model, processor) -> None:
    """Zero-shot: an image classified among labels put into a prompt template."""

    def classify(image, labels_text, template):
        labels = [label.strip() for label in (labels_text or "").split(",") if label.strip()]
        if image is None or not labels or "{}" not in template:
            raise gr.Error("Give an image, labels separated by commas and a template with {} for the label.")
        ranked = zero_shot_classify(model, processor, [image.convert("RGB")], labels, hypothesis_template=template)
        return {entry["label"]: entry["score"] for entry in ranked[0]}

    with gr.Tab("Zero-shot"):
        with gr.Row():
            label_image = gr.Image(type="pil", label="Image", elem_id="zero-shot-image")
            with gr.Column():
                labels = gr.Textbox(label="Labels, separated by commas", elem_id="zero-shot-labels")
                template = gr.Textbox(value="a photo of a {}", label="Template", elem_id="zero-shot-template")
        classify_button = gr.Button("Classify", elem_id="zero-shot-button")
        ranking = gr.Label(label="ITC probability", elem_id="zero-shot-ranking")
        classify_button.click(classify, [label_image, labels, template], ranking)


def _gradcam_tab(gr, model, processor) -> None:
    """Grad-CAM: where in the image a phrase's ITM score comes from."""

    def locate(image, phrase):
        if image is None or not (phrase or "").strip():
            raise gr.Error("Give an image and a phrase.")
        return phrase_heatmap(model, processor, image, phrase.strip())

    with gr.Tab("Grad-CAM"):
        with gr.Row():
            cam_image = gr.Image(type="pil", label="Image", elem_id="gradcam-image")
            phrase = gr.Textbox(label="Phrase", elem_id="gradcam-phrase")
        cam_button = gr.Button("Locate", elem_id="gradcam-button")
        heat = gr.Image(type="pil", label="Grad-CAM of the ITM score", elem_id="gradcam-heatmap")
        cam_button.click(locate, [cam_image, phrase], heat)


def _search_tab(gr, model, processor, image_folder) -> None:
    """Search: the images of `image_folder` that best match a text."""

    def find(query, top_k, rerank):
        if not (query or "").strip():
            raise gr.Error("Type what to look for.")
        update_index(image_folder, model, processor)
        hits = search_index(image_folder, query.strip(), model, processor, top_k=int(top_k), rerank=int(rerank))
        return [(str(Path(image_folder) / hit.path), _hit_caption(hit)) for hit in hits]

    with gr.Tab("Search"):
        query = gr.Textbox(label=f"Search {image_folder}", elem_id="search-query")
        with gr.Row():
            top_k = gr.Slider(1, 20, value=5, step=1, label="Images")
            rerank = gr.Slider(0, 50, value=10, step=1, label="Re-rank the best k by ITM (0: ITC only)")
        search_button = gr.Button("Search", elem_id="search-button")
        gallery = gr.Gallery(label="Best matches", elem_id="search-gallery", columns=5)
        search_button.click(find, [query, top_k, rerank], gallery)


def _hit_caption(hit) -> str:
    itm = f", ITM {hit.itm_score:.3f}" if hit.itm_score is not None else ""
    return f"{hit.path}: ITC {hit.similarity:.3f}{itm}"


__all__ = ["build_app", "match_scores", "phrase_heatmap"]
