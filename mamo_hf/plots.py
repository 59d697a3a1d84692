"""Pictures of curves, drawn with PIL alone (no plotting library needed): panels of one or more labelled series."""

import csv
import math
from pathlib import Path

from PIL import Image, ImageDraw

PANEL = (360, 200)
MARGIN = 36
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75))

# A point of a series: `(x, y)`, or `(x, y, spread)` to shade `y ± spread` around the line.
Point = tuple[float, float] | tuple[float, float, float]


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
    return plot_panels({name: {name: points} for name, points in curves.items()}, path, columns)


def plot_panels(
    panels: dict[str, dict[str, list[Point]]], path: Path, columns: int = 3, x_label: str = "step"
) -> Path:
    """Draw `title → {series label → points}`, one panel per title in the given order (the title names what the
    y axis shows, `x_label` what the x axis shows), every series of a panel in its own colour (a legend where a
    panel has several), and save a PNG at `path`."""
    rows = max(1, math.ceil(len(panels) / columns))
    image = Image.new("RGB", (min(columns, max(1, len(panels))) * PANEL[0], rows * PANEL[1]), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    for index, (title, series) in enumerate(panels.items()):
        _panel(draw, ((index % columns) * PANEL[0], (index // columns) * PANEL[1]), title, series, x_label)
    image.save(path, format="PNG")
    return path


def _panel(draw, origin: tuple[int, int], title: str, series: dict[str, list[Point]], x_label: str) -> None:
    left, top = origin
    x0, y0, x1, y1 = left + MARGIN, top + 20, left + PANEL[0] - 12, top + PANEL[1] - MARGIN
    draw.rectangle((x0, y0, x1, y1), outline=(160, 160, 160))
    draw.text((x0, top + 4), title, fill="black")
    draw.text(((x0 + x1) // 2 - 3 * len(x_label), y1 + 16), x_label, fill=(60, 60, 60))
    points = [point for line in series.values() for point in line]
    xs = [point[0] for point in points]
    ys = [y for point in points for y in _extent(point)]
    low, high, first, last = min(ys), max(ys), min(xs), max(xs)
    draw.text((x0, y1 + 4), f"{first:g}", fill=(90, 90, 90))
    draw.text((x1 - 30, y1 + 4), f"{last:g}", fill=(90, 90, 90))
    draw.text((left + 2, y0), f"{high:.3g}", fill=(90, 90, 90))
    draw.text((left + 2, y1 - 10), f"{low:.3g}", fill=(90, 90, 90))

    def place(x: float, y: float) -> tuple[float, float]:
        across = x0 + (x1 - x0) * ((x - first) / (last - first) if last > first else 0.5)
        return across, y1 - (y1 - y0) * ((y - low) / (high - low) if high > low else 0.5)

    for index, (label, line) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        if len(line) > 1 and len(line[0]) == 3:
            upper = [place(x, y + spread) for x, y, spread in line]
            lower = [place(x, y - spread) for x, y, spread in reversed(line)]
            draw.polygon(upper + lower, fill=(*colour, 50))
        placed = [place(point[0], point[1]) for point in line]
        if len(placed) > 1:
            draw.line(placed, fill=colour, width=2)
        else:
            draw.ellipse((placed[0][0] - 2, placed[0][1] - 2, placed[0][0] + 2, placed[0][1] + 2), fill=colour)
        if len(series) > 1:
            draw.text((x0 + 6, y0 + 4 + 12 * index), label, fill=colour)


def _extent(point: Point) -> tuple[float, float]:
    """The lowest and highest value a point draws (its band where it has one)."""
    spread = point[2] if len(point) == 3 else 0.0
    return point[1] - spread, point[1] + spread


__all__ = ["plot_curves", "plot_panels", "read_curves"]
