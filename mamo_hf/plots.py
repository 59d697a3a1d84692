"""A picture of a run's curves, drawn with PIL alone (no plotting library needed): one panel per logged value."""

import csv
import math
from pathlib import Path

from PIL import Image, ImageDraw

PANEL = (360, 200)
MARGIN = 36
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75))


def read_curves(metrics_csv: Path, prefix: str = "train/") -> dict[str, list[tuple[int, float]]]:
    """`name → [(step, value), ...]` of the finite values whose name starts with `prefix`, from a run's
    `logs/mamo/metrics.csv`."""
    curves: dict[str, list[tuple[int, float]]] = {}
    with open(metrics_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            value = float(row["value"])
            if row["name"].startswith(prefix) and math.isfinite(value):
                curves.setdefault(row["name"].removeprefix(prefix), []).append((int(row["step"]), value))
    return curves


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: Path, columns: int = 3) -> Path:
    """Draw each curve in a panel of its own (step on x, value on y, both ranges written), save a PNG at `path`."""
    names = sorted(curves)
    rows = max(1, math.ceil(len(names) / columns))
    image = Image.new("RGB", (columns * PANEL[0], rows * PANEL[1]), "white")
    draw = ImageDraw.Draw(image)
    for index, name in enumerate(names):
        left, top = (index % columns) * PANEL[0], (index // columns) * PANEL[1]
        _panel(draw, (left, top), name, curves[name], COLOURS[index % len(COLOURS)])
    image.save(path, format="PNG")
    return path


def _panel(draw: ImageDraw.ImageDraw, origin: tuple[int, int], name: str, points, colour) -> None:
    left, top = origin
    x0, y0, x1, y1 = left + MARGIN, top + 20, left + PANEL[0] - 12, top + PANEL[1] - MARGIN
    draw.rectangle((x0, y0, x1, y1), outline=(160, 160, 160))
    draw.text((x0, top + 4), name, fill="black")
    steps, values = [step for step, _ in points], [value for _, value in points]
    low, high = min(values), max(values)
    first, last = min(steps), max(steps)
    draw.text((x0, y1 + 4), str(first), fill=(90, 90, 90))
    draw.text((x1 - 30, y1 + 4), str(last), fill=(90, 90, 90))
    draw.text((left + 2, y0), f"{high:.3g}", fill=(90, 90, 90))
    draw.text((left + 2, y1 - 10), f"{low:.3g}", fill=(90, 90, 90))

    def place(step: int, value: float) -> tuple[float, float]:
        x = x0 + (x1 - x0) * ((step - first) / (last - first) if last > first else 0.5)
        y = y1 - (y1 - y0) * ((value - low) / (high - low) if high > low else 0.5)
        return x, y

    placed = [place(step, value) for step, value in points]
    if len(placed) > 1:
        draw.line(placed, fill=colour, width=2)
    else:
        draw.ellipse((placed[0][0] - 2, placed[0][1] - 2, placed[0][0] + 2, placed[0][1] + 2), fill=colour)


__all__ = ["plot_curves", "read_curves"]
