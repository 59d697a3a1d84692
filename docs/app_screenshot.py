"""Draw `docs/app.png`, the README's picture of `mamo-hf app`: the Match tab of a model as the page opens with
`--images`, its first example (an image of the folder, its caption and a hard negative of it) scored, in headless
Chromium (Debian's `chromium`, driven by Playwright).

    mamo-hf demo --output-dir mamo-demo
    mamo-hf demo-data --output demo-data --num-pairs 12
    python docs/app_screenshot.py mamo-demo demo-data/images docs/app.png

It prints the scores and says whether the true caption outscored the negative by ITC and by ITM.

**A plain headless-Chromium screenshot is blank.** Gradio builds the page with JavaScript after it loads, and
`chromium --headless --screenshot=app.png http://127.0.0.1:7860/` captures it at load: an empty white page. Give the
scripts time with a virtual-time budget, e.g. `chromium --headless --no-sandbox --window-size=1100,700
--virtual-time-budget=10000 --screenshot=app.png http://127.0.0.1:7860/` (which shows the page before anything is
run), or drive the page as this script does, with Playwright waiting for the result before it takes the picture.
"""

import os
import shutil
import socket
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect, sync_playwright

from mamo_hf import MamoForImageTextRetrieval, MamoProcessor
from mamo_hf.app import build_app, match_scores
from mamo_hf.app_examples import app_examples

VIEWPORT = {"width": 1100, "height": 690}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(model_folder: str, image_folder: str, output: str) -> None:
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    model = MamoForImageTextRetrieval.from_pretrained(model_folder)
    processor = MamoProcessor.from_pretrained(model_folder)
    app = build_app(model, processor, image_folder, title=f"MAMO: {Path(model_folder).name}")
    image, text = app_examples(image_folder, processor.tokenizer).match[0]  # what the page opens with
    rows = match_scores(model, processor, Image.open(image), text.splitlines())
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            page.locator("#match-button").click()
            for row in rows:
                expect(page.locator("#match-table")).to_contain_text(f"{row['itm_probability']:.4f}".rstrip("0"))
            page.screenshot(path=output)
            browser.close()
    finally:
        app.close()
    for row in rows:
        print(f"  ITC {row['itc_probability']:.4f}  ITM {row['itm_probability']:.4f}  {row['caption']}")
    if len(rows) == 2:
        itc, itm = (rows[0][name] > rows[1][name] for name in ("itc_probability", "itm_probability"))
        print(f"the true caption outscores the negative by ITC: {itc}, by ITM: {itm}")
    print(f"wrote {output} ({Path(image).name})")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit("usage: python docs/app_screenshot.py MODEL IMAGE_FOLDER OUTPUT.png")
    main(*sys.argv[1:])
