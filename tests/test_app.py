"""`mamo-hf app`: the scores it shows are the model's, its examples and warnings fit the model's vocabulary, and the
page works end to end in a real headless browser (Debian's Chromium, driven by Playwright; skipped, with the reason,
where Gradio, Playwright or Chromium is absent), served by `mamo-hf app` in its own process."""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from helpers import save_retrieval_model
from PIL import Image

from mamo_hf import MamoForImageTextRetrieval, MamoProcessor
from mamo_hf.app import GRADCAM_DEMO_RESULT, gradcam_readout, match_scores, phrase_heatmap
from mamo_hf.app_examples import (
    DEFAULT_CAPTIONS,
    DEFAULT_PHRASE,
    app_examples,
    default_template,
    referring_phrase,
    vocabulary_note,
)
from mamo_hf.data import demo_tokenizer, tiny_config_and_processor, write_demo_dataset
from mamo_hf.evaluation import zero_shot_classify
from mamo_hf.search import search_index

CAPTIONS = ["a red square", "a blue circle"]
MIN_SIDE = 256


@pytest.fixture(scope="module")
def model_and_processor():
    config, processor = tiny_config_and_processor(32, patch_size=16)
    torch.manual_seed(0)
    return MamoForImageTextRetrieval(config).eval(), processor


@pytest.fixture
def red_image(tmp_path):
    image = Image.new("RGB", (64, 48), (128, 128, 128))
    image.paste((210, 20, 20), (8, 8, 40, 36))
    path = tmp_path / "images" / "red.png"
    path.parent.mkdir()
    image.save(path)
    Image.new("RGB", (64, 48), (20, 30, 200)).save(tmp_path / "images" / "blue.png")
    return path


def test_match_scores_are_the_models_itc_and_itm_scores(model_and_processor, red_image):
    model, processor = model_and_processor
    rows = match_scores(model, processor, Image.open(red_image), CAPTIONS)
    inputs = processor(images=[Image.open(red_image).convert("RGB")] * 2, text=CAPTIONS, padding=True,
                       return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        outputs = model(**inputs, return_loss=False)
    assert [row["caption"] for row in rows] == CAPTIONS
    assert [row["itm_probability"] for row in rows] == pytest.approx(outputs.itm_scores.tolist(), abs=1e-6)
    cosine = outputs.image_embeds[0] @ outputs.text_embeds.T
    assert [row["cosine"] for row in rows] == pytest.approx(cosine.tolist(), abs=1e-6)
    assert sum(row["itc_probability"] for row in rows) == pytest.approx(1.0)
    assert (rows[0]["itc_probability"] > rows[1]["itc_probability"]) == bool(cosine[0] > cosine[1])  # same order


def test_the_phrase_heatmap_is_drawn_over_the_image_enlarged_to_a_readable_size(model_and_processor, red_image):
    model, processor = model_and_processor
    image = Image.open(red_image).convert("RGB")
    overlay = phrase_heatmap(model, processor, image, "the red square", **gradcam_readout(model))
    assert overlay.size == (384, 288)  # 64 × 48 enlarged 6 times, the least integer factor to a side of 256 px
    assert overlay.tobytes() != image.resize(overlay.size, Image.Resampling.NEAREST).tobytes()


def test_examples_come_from_the_folders_captions_in_words_the_model_knows(tmp_path):
    write_demo_dataset(tmp_path / "demo-data", 3)
    tokenizer = demo_tokenizer()
    examples = app_examples(tmp_path / "demo-data" / "images", tokenizer)
    captions = [line for row in examples.match for line in row[1].splitlines()]
    assert len(examples.match) == 3 and len(captions) == 6  # each image's caption and a negative of it
    assert {row[1] for row in examples.gradcam} <= {referring_phrase(caption) for caption in captions}
    assert default_template(tokenizer) == "there is a {}" and examples.zero_shot[0][2] == "there is a {}"
    texts = [
        text for rows in (examples.match, examples.zero_shot, examples.gradcam) for row in rows for text in row[1:]
    ]
    assert vocabulary_note(tokenizer, *(text.replace(",", " ") for text in texts)) == ""
    note = vocabulary_note(tokenizer, "a photo of a {}", "a zebra")
    assert "photo" in note and "zebra" in note and "{}" not in note
    plain = shutil.copytree(tmp_path / "demo-data" / "images", tmp_path / "plain" / "images")  # no caption file
    rows = app_examples(plain, tokenizer)
    assert [row[1] for row in rows.match] == ["\n".join(DEFAULT_CAPTIONS)] * 3
    assert [row[1] for row in rows.gradcam] == [DEFAULT_PHRASE] * 3
    assert app_examples(None, tokenizer).match == []


def test_the_grad_cam_tab_states_what_its_read_out_measured_on_the_demo_model():
    results = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "app_gradcam_demo.json").read_text())
    chosen = results["chosen"]
    demo_model = MamoForImageTextRetrieval(tiny_config_and_processor(64, patch_size=8)[0])  # the demo's 2 layers
    assert gradcam_readout(demo_model) == {"layer": chosen["layer"], "queries": chosen["queries"]}
    stated = {name: GRADCAM_DEMO_RESULT[name] for name in ("accuracy", "standard_error", "random_baseline", "n")}
    assert stated == {name: chosen[name] for name in stated}
    assert GRADCAM_DEMO_RESULT["best_any"] == max(row["accuracy"] for row in results["test"])
    assert chosen["standard_error"] <= 3.0


def _browser_or_skip():
    for module in ("gradio", "playwright"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install 'mamo-hf[app]' and playwright)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    return chromium


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served_app(model_folder: Path, images: Path, stderr_path: Path, timeout: float = 240):
    """`mamo-hf app MODEL --images FOLDER` in its own process, its stderr written to `stderr_path`: the page's URL
    once it answers; the server is stopped on exit."""
    port = _free_port()
    command = [sys.executable, "-m", "mamo_hf_cli", "app", str(model_folder), "--images", str(images)]
    environment = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(stderr_path, "w") as stderr:
        server = subprocess.Popen([*command, "--port", str(port)], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=stderr, env=environment)  # fmt: skip
        try:
            url, started = f"http://127.0.0.1:{port}/", time.monotonic()
            while True:
                try:
                    urllib.request.urlopen(url, timeout=5).close()
                    break
                except OSError:
                    assert server.poll() is None, stderr_path.read_text()[-3000:]
                    assert time.monotonic() - started < timeout, "mamo-hf app did not answer"
                    time.sleep(1)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=60)


# The size of an <img> as the page paints it: its natural size and the width it is drawn at inside its box, by its
# CSS `object-fit` (Gradio's own, `scale-down`, never enlarges a small image).
_PAINTED = """(image) => {
    const fit = getComputedStyle(image).objectFit;
    const contain = Math.min(image.clientWidth / image.naturalWidth, image.clientHeight / image.naturalHeight);
    const scale = {contain: contain, "scale-down": Math.min(contain, 1), none: 1}[fit];
    const painted = fit === "fill" ? image.clientWidth : Math.floor(image.naturalWidth * scale);
    return {natural: [image.naturalWidth, image.naturalHeight], painted: painted, fit: fit};
}"""


def _check_match_example(page, expect, model, processor, rows):
    """The Match tab opens with the first example's captions; clicking the second fills it and scores it."""
    expect(page.locator("#match-captions textarea")).to_have_value(rows[0][1])
    page.locator("#match-examples tbody tr").nth(1).click()
    image_path, text = rows[1]
    captions = text.splitlines()
    table = page.locator("#match-table")
    expect(table).to_contain_text(captions[1], timeout=60_000)
    for row in match_scores(model, processor, Image.open(image_path), captions):
        expect(table).to_contain_text(f"{row['itm_probability']:.4f}".rstrip("0"))
    assert page.locator("#match-image img").evaluate(_PAINTED)["painted"] >= MIN_SIDE


def _check_zero_shot_example(page, expect, model, processor, rows):
    """A template word the tokenizer does not know is named; clicking an example classifies its image."""
    page.get_by_role("tab", name="Zero-shot").click()
    page.locator("#zero-shot-template input, #zero-shot-template textarea").first.fill("a photo of a {}")
    expect(page.locator("#zero-shot-vocabulary")).to_contain_text("photo", timeout=30_000)
    page.locator("#zero-shot-examples tbody tr").nth(0).click()
    image_path, labels, template = rows[0]
    image = Image.open(image_path).convert("RGB")
    ranked = zero_shot_classify(model, processor, [image], labels.split(", "), hypothesis_template=template)
    expect(page.locator("#zero-shot-ranking h2")).to_have_text(ranked[0][0]["label"], timeout=60_000)
    expect(page.locator("#zero-shot-vocabulary")).not_to_contain_text("photo")


def _check_gradcam_example(page, expect, model, processor, rows):
    """Clicking an example draws its heat map, the model's own, at 256 px or more, and painted as large."""
    page.get_by_role("tab", name="Grad-CAM").click()
    page.locator("#gradcam-examples tbody tr").nth(0).click()
    shown = page.locator("#gradcam-heatmap img")
    expect(shown).to_be_visible(timeout=60_000)
    image_path, phrase = rows[0]
    expected = phrase_heatmap(model, processor, Image.open(image_path), phrase, **gradcam_readout(model))
    size = shown.evaluate(_PAINTED)
    assert tuple(size["natural"]) == expected.size and min(expected.size) >= MIN_SIDE and size["painted"] >= MIN_SIDE
    drawn = Image.open(io.BytesIO(page.request.get(shown.get_attribute("src")).body())).convert("RGB")
    difference = torch.tensor(list(drawn.tobytes())) - torch.tensor(list(expected.tobytes()))
    assert difference.abs().max() <= 2  # the same map, up to rounding
    expect(page.locator("#gradcam-readout")).to_contain_text(f"{GRADCAM_DEMO_RESULT['accuracy']:.1f}")


def _check_search(page, expect, model, processor, folder, query):
    """The Search tab's gallery holds the folder's best images for a text, the best first."""
    page.get_by_role("tab", name="Search").click()
    page.locator("#search-query textarea, #search-query input").first.fill(query)
    page.locator("#search-button").click()
    best = search_index(folder, query, model, processor, top_k=5, rerank=10)
    gallery = page.locator("#search-gallery")
    expect(gallery.locator("img")).to_have_count(len(best), timeout=60_000)
    gallery.locator("img").first.click()
    expect(gallery).to_contain_text(best[0].path)


def test_the_app_works_end_to_end_in_a_headless_browser(tmp_path):
    chromium = _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    write_demo_dataset(tmp_path / "demo-data", 3)
    folder, model_folder = tmp_path / "demo-data" / "images", save_retrieval_model(tmp_path)
    model = MamoForImageTextRetrieval.from_pretrained(model_folder).eval()
    processor = MamoProcessor.from_pretrained(model_folder)
    examples = app_examples(folder, processor.tokenizer)
    stderr = tmp_path / "server.err"
    with served_app(model_folder, folder, stderr) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url, timeout=60_000)
        _check_match_example(page, expect, model, processor, examples.match)
        page.screenshot(path=str(tmp_path / "match.png"))
        _check_zero_shot_example(page, expect, model, processor, examples.zero_shot)
        _check_gradcam_example(page, expect, model, processor, examples.gradcam)
        _check_search(page, expect, model, processor, folder, examples.match[0][1].splitlines()[0])
        assert page.locator(".toast-body").count() == 0  # no error (or warning) toast
        browser.close()
    log = stderr.read_text()
    assert "Traceback" not in log and "warning" not in log.lower(), log[-3000:]
    assert os.path.getsize(tmp_path / "match.png") > 10_000
