"""`mamo-hf app`: the scores it shows are the model's, and the page works end to end in a real headless browser
(Debian's Chromium, driven by Playwright; skipped, with the reason, where Gradio, Playwright or Chromium is absent)."""

import os
import shutil
import socket

import pytest
import torch
from PIL import Image

from mamo_hf import MamoForImageTextRetrieval
from mamo_hf.app import match_scores, phrase_heatmap
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.evaluation import zero_shot_classify
from mamo_hf.search import search_index

CAPTIONS = ["a red square", "a blue circle"]


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


def test_the_phrase_heatmap_is_drawn_over_the_image_at_its_size(model_and_processor, red_image):
    model, processor = model_and_processor
    image = Image.open(red_image).convert("RGB")
    overlay = phrase_heatmap(model, processor, image, "the red square")
    assert overlay.size == image.size and overlay.tobytes() != image.tobytes()


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


def test_the_app_works_end_to_end_in_a_headless_browser(model_and_processor, red_image, tmp_path, monkeypatch):
    chromium = _browser_or_skip()
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    from playwright.sync_api import expect, sync_playwright

    from mamo_hf.app import build_app

    model, processor = model_and_processor
    folder = red_image.parent
    app, port = build_app(model, processor, image_folder=folder), _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)

            page.locator("#match-image input[type=file]").set_input_files(str(red_image))
            page.locator("#match-captions textarea").fill("\n".join(CAPTIONS))
            page.locator("#match-button").click()
            table = page.locator("#match-table")
            expect(table).to_contain_text(CAPTIONS[1], timeout=60_000)
            for row in match_scores(model, processor, Image.open(red_image), CAPTIONS):
                expect(table).to_contain_text(f"{row['itm_probability']:.4f}".rstrip("0"))
            page.screenshot(path=str(tmp_path / "match.png"))

            page.get_by_role("tab", name="Zero-shot").click()
            page.locator("#zero-shot-image input[type=file]").set_input_files(str(red_image))
            page.locator("#zero-shot-labels textarea, #zero-shot-labels input").first.fill("red, blue, green")
            page.locator("#zero-shot-template textarea, #zero-shot-template input").first.fill("a {} square")
            page.locator("#zero-shot-button").click()
            image = Image.open(red_image).convert("RGB")
            ranked = zero_shot_classify(model, processor, [image], ["red", "blue", "green"], "a {} square")
            expect(page.locator("#zero-shot-ranking h2")).to_have_text(ranked[0][0]["label"], timeout=60_000)
            expect(page.locator("#zero-shot-ranking")).to_contain_text(ranked[0][-1]["label"])

            page.get_by_role("tab", name="Grad-CAM").click()
            page.locator("#gradcam-image input[type=file]").set_input_files(str(red_image))
            page.locator("#gradcam-phrase textarea, #gradcam-phrase input").first.fill("the red square")
            page.locator("#gradcam-button").click()
            expect(page.locator("#gradcam-heatmap img")).to_be_visible(timeout=60_000)

            page.get_by_role("tab", name="Search").click()
            page.locator("#search-query textarea, #search-query input").first.fill("a red square")
            page.locator("#search-button").click()
            best = search_index(folder, "a red square", model, processor, top_k=2, rerank=2)
            gallery = page.locator("#search-gallery")
            expect(gallery.locator("img")).to_have_count(2, timeout=60_000)
            gallery.locator("img").first.click()
            expect(gallery).to_contain_text(best[0].path)
            browser.close()
    finally:
        app.close()
    assert os.path.getsize(tmp_path / "match.png") > 10_000
