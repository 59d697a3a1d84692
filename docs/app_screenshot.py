"""Draw `docs/app.png`, the README's picture of `mamo-hf app`: the Match tab of a model, one image of a folder
against captions, in headless Chromium (Debian's `chromium`, driven by Playwright).

    mamo-hf demo-data --output demo-data --num-pairs 12
    python docs/app_screenshot.py mamo-demo demo-data/images docs/app.png "caption one" "caption two" ...
"""

import os
import shutil
import socket
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from mamo_hf import MamoForImageTextRetrieval, MamoProcessor
from mamo_hf.app import build_app


def main(model_folder: str, image_folder: str, output: str, *captions: str) -> None:
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    model = MamoForImageTextRetrieval.from_pretrained(model_folder)
    app = build_app(model, MamoProcessor.from_pretrained(model_folder), image_folder, title=f"MAMO: {Path(model_folder).name}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            image = sorted(Path(image_folder).glob("*.png"))[0]
            page.locator("#match-image input[type=file]").set_input_files(str(image))
            page.locator("#match-captions textarea").fill("\n".join(captions))
            page.locator("#match-button").click()
            expect(page.locator("#match-table")).to_contain_text(captions[-1], timeout=60_000)
            page.screenshot(path=output)
            browser.close()
    finally:
        app.close()
    print(f"wrote {output} ({image.name} against {len(captions)} captions)")


if __name__ == "__main__":
    main(*sys.argv[1:])
