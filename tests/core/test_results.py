"""Result rendering: stable fixed-width text, HTML tables with highlighted rows, inline figures."""
from __future__ import annotations

from tpushell.core.results import Column, Message, Table


def table() -> Table:
    return Table("cosines", ["layer", Column("cos", "{:.6f}"), "mode"],
                 [["conv0_Conv", 0.9999912, "INT8"], ["conv1_Conv", 0.99871, None]],
                 highlight=[1], notes=["* below 0.999"])


def test_text_is_fixed_width_with_numbers_right_aligned_and_marks():
    assert str(table()).splitlines() == [
        "cosines",
        "  layer            cos  mode",
        "  conv0_Conv  0.999991  INT8",
        "* conv1_Conv  0.998710  -",
        "* below 0.999",
    ]


def test_records_and_columns_keep_raw_values():
    t = table()
    assert t.records()[1] == {"layer": "conv1_Conv", "cos": 0.99871, "mode": None}
    assert t.column("cos") == [0.9999912, 0.99871]


def test_html_escapes_and_highlights():
    t = Table("a<b", ["x"], [["<i>"], ["ok"]], highlight=[0])
    html = t._repr_html_()
    assert "<caption>a&lt;b</caption>" in html and "&lt;i&gt;" in html
    assert '<tr style="background-color:#fdd"><td style="text-align:left">&lt;i&gt;</td></tr>' in html
    assert t.png() is None


def test_figure_shows_inline_as_png():
    from matplotlib.figure import Figure
    fig = Figure()
    fig.add_subplot().bar([0, 1], [1, 2])
    m = Message("two bars", figure=fig)
    png = m.png()
    assert png.startswith(b"\x89PNG")
    assert '<img src="data:image/png;base64,' in m._repr_html_()
    assert str(m) == "two bars"


def test_a_figure_is_embedded_once_in_what_jupyter_stores():
    from IPython.core.formatters import DisplayFormatter
    from matplotlib.figure import Figure
    fig = Figure()
    fig.add_subplot().bar([0, 1], [1, 2])
    data, _ = DisplayFormatter().format(Message("two bars", figure=fig))
    assert "image/png" not in data and data["text/plain"] == "two bars"
    assert sum(v.count("data:image/png;base64,") for v in data.values() if isinstance(v, str)) == 1


def test_a_photograph_is_embedded_as_jpeg_and_saved_as_png():
    import numpy as np
    from matplotlib.figure import Figure
    fig = Figure()
    fig.add_subplot().imshow(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    m = Message("an image", figure=fig)
    html = m._repr_html_()
    assert '<img src="data:image/jpeg;base64,' in html and "image/png" not in html
    assert m.png().startswith(b"\x89PNG")
