"""`mamo-hf app MODEL`: an interactive demo in the browser (Gradio), as models on the Hub have.

Four tabs, each a thin view over the package's own functions (which the tests check without a browser):

- **Match**: an image against captions, one per line: ITC cosine similarity, ITC probability over the captions and
  the ITM match probability of each (`match_scores`).
- **Zero-shot**: an image against labels put into a prompt template, ranked by ITC (`zero_shot_classify`).
- **Grad-CAM**: where in the image a phrase is, the Grad-CAM heat map of its ITM score (`phrase_heatmap`),
  read out as the grounding protocol of `examples/grounding.py` measured it on the demo model (`gradcam_readout`;
  there it finds the object no better than a random box, and the tab says so).
- **Search** (with `--images FOLDER`): the folder's best images for a text, from its incremental index, ITC then ITM
  re-ranking (`mamo_hf.search`).

With `--images`, the folder's first images are example rows of the first three tabs, and the first fills the inputs
(`mamo_hf.app_examples`: with the demo data's captions, each image's own caption, a hard negative and a referring
phrase). Words the model's tokenizer does not know are named under the texts. Pictures show at 256 px at least:
small ones (the demo's 64 px) are enlarged pixel for pixel, never blurred.

Gradio is an optional extra: `pip install "mamo-hf[app]"`.
"""

from pathlib import Path

import torch
from PIL import Image

from .app_examples import (
    DEFAULT_CAPTIONS,
    DEFAULT_LABELS,
    DEFAULT_PHRASE,
    app_examples,
    default_template,
    vocabulary_note,
)
from .evaluation.grounding import default_gradcam_layer, enlarged, gradcam_heatmaps, heatmap_overlay
from .evaluation.zero_shot import zero_shot_classify
from .search import search_index, update_index

APP_EXTRA = 'pip install "mamo-hf[app]"'
DISPLAY_SIDE = 256  # the least side, in pixels, at which a picture is shown
PANEL = 320  # the side of a picture's panel, in CSS pixels
# Pictures fill their panel (Gradio shows a small image at its own size, 64 px for the demo's), pixel for pixel.
_STYLE = "<style>.mamo-picture img { object-fit: contain !important; image-rendering: pixelated; }</style>"


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


# The Grad-CAM read-out of the app: the middle fusion layer (`default_gradcam_layer`, as ALBEF and
# `examples/grounding.py` read it) and every text token as the query (ALBEF's), the read-out that grounded best on
# validation scenes among those of `readout_variants` for the demo model. There, on held-out test scenes, it found the
# referred object no more often than a random box (`GRADCAM_DEMO_RESULT`, in %, over `n` expressions, and the best
# test accuracy of any read-out; from `benchmarks/results/app_gradcam_demo.json`, by `benchmarks/app_gradcam_demo.py`).
GRADCAM_QUERIES = "text"
GRADCAM_DEMO_RESULT = {"accuracy": 40.3, "standard_error": 1.8, "random_baseline": 40.43, "n": 742, "best_any": 42.05}


def gradcam_readout(model) -> dict:
    """`layer` and `queries` of the app's Grad-CAM for `model`: its middle fusion layer, text queries."""
    return {"layer": default_gradcam_layer(len(model.mamo.fusion_encoder.layers)), "queries": GRADCAM_QUERIES}


def phrase_heatmap(
    model,
    processor,
    image: Image.Image,
    phrase: str,
    layer: int | None = None,
    queries: str = "words",
    min_side: int = DISPLAY_SIDE,
) -> Image.Image:
    """The Grad-CAM heat map of `phrase`'s ITM score (`gradcam_heatmaps` of `layer` and `queries`) drawn over the
    image enlarged to at least `min_side` pixels a side (`enlarged`; docs/method.md §5 "Downstream tasks"). The map
    is computed on the model's input, the image at the model's resolution."""
    image = image.convert("RGB")
    inputs = processor(images=[image], text=[phrase], return_tensors="pt")
    ids, mask, pixels = inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"]
    heatmap = gradcam_heatmaps(model, ids, mask, pixels, layer, queries)[0]
    return heatmap_overlay(enlarged(image, min_side), heatmap)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def build_app(model, processor, image_folder: str | Path | None = None, title: str = "MAMO"):
    """The Gradio `Blocks` of the demo for a `MamoForImageTextRetrieval` and its processor; `image_folder` adds the
    Search tab (its index is brought up to date when the app starts) and example inputs (`app_examples`)."""
    import gradio as gr

    model.eval()
    if image_folder is not None:
        update_index(image_folder, model, processor)
    examples = app_examples(image_folder, processor.tokenizer)
    with gr.Blocks(title=title) as app:
        gr.HTML(head=_STYLE, elem_id="mamo-style")
        gr.Markdown(f"# {title}\nMasked multimodal modeling (MAMO) for vision-language: ITC, ITM and Grad-CAM.")
        _match_tab(gr, model, processor, examples.match)
        _zero_shot_tab(gr, model, processor, examples.zero_shot)
        _gradcam_tab(gr, model, processor, examples.gradcam)
        if image_folder is not None:
            _search_tab(gr, model, processor, image_folder)
    return app


def _picture(gr, label: str, elem_id: str, value=None, interactive: bool | None = None):
    """An image panel `PANEL` px a side whose picture fills it."""
    return gr.Image(
        value=value,
        type="pil",
        format="png",
        label=label,
        elem_id=elem_id,
        elem_classes="mamo-picture",
        height=PANEL,
        width=PANEL,
        interactive=interactive,
    )


def _first(rows: list[list[str]], column: int, default):
    """Column `column` of the first example row (which fills the inputs when the page opens), or `default`."""
    return rows[0][column] if rows else default


def _examples(gr, name: str, rows: list[list[str]], inputs: list, outputs, run) -> None:
    """The example rows of a tab: clicking one fills the inputs and runs the tab."""
    if rows:
        gr.Examples(
            rows,
            inputs,
            outputs,
            fn=run,
            run_on_click=True,
            cache_examples=False,
            label="Examples: click one to fill the inputs and run it",
            elem_id=f"{name}-examples",
        )


def _match_tab(gr, model, processor, examples: list[list[str]]) -> None:
    """Match: an image against captions, one per line, by ITC and ITM."""

    def match(image, captions_text):
        captions = _lines(captions_text)
        if image is None or not captions:
            raise gr.Error("Give an image and at least one caption (one per line).")
        rows = match_scores(model, processor, image, captions)
        return [[row["caption"], *(round(row[name], 4) for name in ("cosine", "itc_probability", "itm_probability"))]
                for row in rows]  # fmt: skip

    def note(text):
        return vocabulary_note(processor.tokenizer, text)

    with gr.Tab("Match"):
        with gr.Row():
            with gr.Column(scale=0, min_width=PANEL):
                image = _picture(gr, "Image", "match-image", _first(examples, 0, None))
            with gr.Column():
                text = _first(examples, 1, "\n".join(DEFAULT_CAPTIONS))
                captions = gr.Textbox(text, lines=4, label="Captions, one per line", elem_id="match-captions")
                warning = gr.Markdown(note(text), elem_id="match-vocabulary")
                button = gr.Button("Score", variant="primary", elem_id="match-button")
                headers = ["caption", "ITC cosine", "ITC probability", "ITM probability"]
                table = gr.Dataframe(
                    headers=headers,
                    label="Scores",
                    elem_id="match-table",
                    interactive=False,
                    wrap=True,
                    column_widths=["40%", "20%", "20%", "20%"],
                )
        _examples(gr, "match", examples, [image, captions], table, match)
        button.click(match, [image, captions], table)
        captions.change(note, captions, warning, show_progress="hidden")


def _zero_shot_tab(gr, model, processor, examples: list[list[str]]) -> None:
    """Zero-shot: an image classified among labels put into a prompt template."""

    def classify(image, labels_text, template):
        labels = [label.strip() for label in (labels_text or "").split(",") if label.strip()]
        if image is None or not labels or "{}" not in template:
            raise gr.Error("Give an image, labels separated by commas and a template with {} for the label.")
        ranked = zero_shot_classify(model, processor, [image.convert("RGB")], labels, hypothesis_template=template)
        return {entry["label"]: entry["score"] for entry in ranked[0]}

    def note(labels_text, template):
        return vocabulary_note(processor.tokenizer, (labels_text or "").replace(",", " "), template)

    with gr.Tab("Zero-shot"):
        with gr.Row():
            with gr.Column(scale=0, min_width=PANEL):
                image = _picture(gr, "Image", "zero-shot-image", _first(examples, 0, None))
            with gr.Column():
                label_text = _first(examples, 1, DEFAULT_LABELS)
                template_text = _first(examples, 2, default_template(processor.tokenizer))
                labels = gr.Textbox(label_text, label="Labels, separated by commas", elem_id="zero-shot-labels")
                template = gr.Textbox(template_text, label="Template ({} is the label)", elem_id="zero-shot-template")
                warning = gr.Markdown(note(label_text, template_text), elem_id="zero-shot-vocabulary")
                button = gr.Button("Classify", variant="primary", elem_id="zero-shot-button")
                ranking = gr.Label(label="ITC probability", elem_id="zero-shot-ranking")
        _examples(gr, "zero-shot", examples, [image, labels, template], ranking, classify)
        button.click(classify, [image, labels, template], ranking)
        for text in (labels, template):
            text.change(note, [labels, template], warning, show_progress="hidden")


def _gradcam_tab(gr, model, processor, examples: list[list[str]]) -> None:
    """Grad-CAM: where in the image a phrase's ITM score comes from."""
    readout = gradcam_readout(model)

    def locate(image, phrase):
        if image is None or not (phrase or "").strip():
            raise gr.Error("Give an image and a phrase.")
        return phrase_heatmap(model, processor, image, phrase.strip(), **readout)

    def note(text):
        return vocabulary_note(processor.tokenizer, text)

    with gr.Tab("Grad-CAM"):
        with gr.Row():
            with gr.Column(scale=0, min_width=PANEL):
                image = _picture(gr, "Image", "gradcam-image", _first(examples, 0, None))
            with gr.Column(scale=0, min_width=PANEL):
                heat = _picture(gr, "Grad-CAM of the ITM score", "gradcam-heatmap", interactive=False)
            with gr.Column():
                text = _first(examples, 1, DEFAULT_PHRASE)
                phrase = gr.Textbox(text, label="Phrase", elem_id="gradcam-phrase")
                warning = gr.Markdown(note(text), elem_id="gradcam-vocabulary")
                button = gr.Button("Locate", variant="primary", elem_id="gradcam-button")
                gr.Markdown(_gradcam_text(readout), elem_id="gradcam-readout")
        _examples(gr, "gradcam", examples, [image, phrase], heat, locate)
        button.click(locate, [image, phrase], heat)
        phrase.change(note, phrase, warning, show_progress="hidden")


def _gradcam_text(readout: dict) -> str:
    """What the heat map is, and how well its read-out grounded phrases on the demo model (measured, not hoped)."""
    result = GRADCAM_DEMO_RESULT
    return (
        f"The heat map is the Grad-CAM of the ITM match score in fusion layer {readout['layer']}, averaged over every "
        "text token (brighter: that patch raised the score more).\n\n"
        f"**On the demo model it does not find the object better than chance.** On {result['n']} phrases of new "
        f"generated scenes it picked the right object {result['accuracy']:.1f} ± {result['standard_error']:.1f} % of "
        f"the time; a box picked at random, {result['random_baseline']:.1f} %. No other layer, query or phrasing did "
        f"clearly better (at most {result['best_any']:.1f} %). That model learned whole captions, never referring "
        "phrases: fine-tune one on phrases, as examples/grounding.py does, for maps that point at the object "
        "(measured by benchmarks/app_gradcam_demo.py)."
    )


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


__all__ = ["GRADCAM_DEMO_RESULT", "build_app", "gradcam_readout", "match_scores", "phrase_heatmap"]
