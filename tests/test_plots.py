"""The PIL-only plots: panels of several series, each in its colour, with a shaded mean ± std band."""

from PIL import Image

from mamo_hf.plots import COLOURS, plot_panels


def _colours(picture: Image.Image) -> set:
    return set(picture.convert("RGB").getdata())


def test_every_series_of_a_panel_is_drawn_in_its_own_colour(tmp_path):
    panels = {
        "accuracy vs steps": {"a": [(0, 10.0), (750, 20.0)], "b": [(0, 12.0), (750, 30.0)]},
        "accuracy vs seconds": {"a": [(0, 10.0), (90, 20.0)]},
    }
    picture = Image.open(plot_panels(panels, tmp_path / "curves.png", columns=2))
    assert picture.size == (2 * 360, 200)
    drawn = _colours(picture)
    assert COLOURS[0] in drawn and COLOURS[1] in drawn and COLOURS[2] not in drawn


def test_a_spread_is_shaded_around_its_line_and_widens_the_axis(tmp_path):
    with_band = plot_panels({"p": {"a": [(0, 10.0, 5.0), (1, 20.0, 5.0)]}}, tmp_path / "band.png")
    without = plot_panels({"p": {"a": [(0, 10.0), (1, 20.0)]}}, tmp_path / "line.png")
    shaded, plain = _colours(Image.open(with_band)), _colours(Image.open(without))
    assert len(shaded - plain) > 0  # the translucent band blends new colours
    assert Image.open(with_band).tobytes() != Image.open(without).tobytes()
