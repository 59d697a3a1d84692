"""Records to items (`mamo_hf.data.records`): images loaded as the processor reads them (16-bit, transparent), within a
pixel limit, and anything that is not an image file a skipped record rather than a hang; augmentation that depends
on the seed, the epoch and the index only."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import pixels, save_image, write_jsonl
from PIL import Image
from PIL import Image as PILImage

from mamo_hf.data import CaptionDataset, CaptionOptions, TrainTransform, load_image
from mamo_hf.image_processing_mamo import to_rgb_array

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def test_a_huge_jpeg_is_decoded_at_reduced_size_and_a_huge_png_is_skipped(tmp_path):
    PILImage.new("RGB", (400, 300), (200, 30, 30)).save(tmp_path / "big.jpg", quality=90)
    PILImage.new("RGB", (400, 300), (30, 200, 30)).save(tmp_path / "big.png")
    save_image(tmp_path / "small.png")
    records = [{"image": name, "caption": name} for name in ("big.jpg", "big.png", "small.png")]
    (tmp_path / "captions.json").write_text(json.dumps(records))
    dataset = CaptionDataset(tmp_path / "captions.json", options=CaptionOptions(max_image_pixels=40_000))
    jpeg = dataset[0]
    assert jpeg["caption"] == "big jpg" and jpeg["image"].size == (200, 150)  # decoded at 1/2, not at full size
    assert dataset[1]["caption"] == "small png"  # the PNG was skipped for the next good record
    (skipped,) = dataset[1]["skipped"]
    assert skipped.source.endswith("big.png") and "image too large: 400×300 pixels" in skipped.reason
    unlimited = CaptionDataset(tmp_path / "captions.json", options=CaptionOptions(max_image_pixels=None))
    assert unlimited[0]["image"].size == (400, 300)


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header says `width × height` pixels (its data is that of 8 × 8)."""
    import struct
    import zlib

    encoded = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(encoded, "PNG")
    data = bytearray(encoded.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # the IHDR chunk's width and height, then its CRC
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_an_image_above_pils_own_limit_is_skipped_in_the_packages_words_even_without_a_limit(tmp_path):
    """PIL refuses any image above 2 × `PIL.Image.MAX_IMAGE_PIXELS` as a possible decompression bomb, before
    `max_image_pixels` is looked at: the record is skipped as "image too large", naming PIL's limit and how to
    raise it, also with `max_image_pixels=None` (no limit of the package's own)."""
    (tmp_path / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    save_image(tmp_path / "small.png")
    records = [{"image": name, "caption": name} for name in ("bomb.png", "small.png")]
    (tmp_path / "captions.json").write_text(json.dumps(records))
    for limit in (40_000, None):
        item = CaptionDataset(tmp_path / "captions.json", options=CaptionOptions(max_image_pixels=limit))[0]
        (skipped,) = item["skipped"]
        assert item["caption"] == "small png" and skipped.source.endswith("bomb.png")
        assert (
            skipped.reason.startswith("image too large: above PIL's limit of") and "MAX_IMAGE_PIXELS" in skipped.reason
        )


def test_augmentation_depends_on_seed_epoch_and_index_only(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    PILImage.fromarray(noise).save(tmp_path / "noise.png")
    write_jsonl(tmp_path / "c.jsonl", [{"image": "noise.png", "caption": f"pair {index}"} for index in range(3)])

    def images(seed=0, epoch=0):
        dataset = CaptionDataset(tmp_path / "c.jsonl", options=CaptionOptions(transform=TrainTransform(16), seed=seed))
        dataset.set_epoch(epoch)
        return [pixels(dataset[index]["image"]) for index in (2, 0, 1)]

    first = images()
    assert all(np.array_equal(a, b) for a, b in zip(first, images()))
    assert not any(np.array_equal(a, b) for a, b in zip(first, images(epoch=1)))
    assert not any(np.array_equal(a, b) for a, b in zip(first, images(seed=1)))
    assert not np.array_equal(first[1], first[2])  # different indices, different crops


def test_no_transform_passes_images_through(tmp_path):
    save_image(tmp_path / "a.png", size=(33, 17))
    write_jsonl(tmp_path / "c.jsonl", [{"image": "a.png", "caption": "x"}])
    assert CaptionDataset(tmp_path / "c.jsonl")[0]["image"].size == (33, 17)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_a_fifo_where_an_image_should_be_is_a_skipped_record_not_a_hang(tmp_path):
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "red.png")
    os.mkfifo(tmp_path / "pipe.png")
    records = [{"image": "pipe.png", "caption": "a pipe"}, {"image": "red.png", "caption": "a red square"}]
    (tmp_path / "captions.json").write_text(json.dumps(records))
    code = (
        "import sys; from mamo_hf.data import CaptionDataset; item = CaptionDataset(sys.argv[1])[0]; "
        "print(item['caption'], '|', item['skipped'][0].reason)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "captions.json")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "a red square | not an image file: a folder, a FIFO or a device"


def test_training_reads_16_bit_and_transparent_images_as_the_processor_does(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    rgba.save(tmp_path / "clear.png")
    deep = load_image(str(tmp_path / "deep.png"))
    assert np.array_equal(np.array(deep), to_rgb_array(Image.open(tmp_path / "deep.png")))
    assert 0 < np.array(deep).mean() < 255  # not saturated
    assert np.array(load_image(str(tmp_path / "clear.png")))[0, 0].tolist() == [255, 255, 255]
