"""What commands return: stable plain text for terminals and transcripts, HTML for notebooks,
and optionally a matplotlib figure.

    r = Table("layers", [Column("name"), Column("cos", "{:.6f}")], [["conv0_Conv", 0.99991]])
    str(r)            # fixed-width text, the same on every machine
    r._repr_html_()   # an HTML table (IPython/Jupyter display it)
    r.records()       # [{"name": "conv0_Conv", "cos": 0.99991}]

The cmd2 shell prints `str(result)` and saves (or shows) `result.figure`; IPython displays the
object itself, so `x = %cos` captures it for later use.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence


class Result:
    """Base of every command result; subclasses implement `text()` and `html()`.

    `figure` is a matplotlib Figure or None, `figure_path` where the command saved it (if it did);
    `data` is the domain object behind the result (a Graph, a calibration table, a check result
    ...) for use from Python.
    """

    figure: Any = None
    figure_path: str | None = None
    data: Any = None

    def text(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        saved = [f"saved {self.figure_path}"] if self.figure_path else []
        return "\n".join([self.text()] + saved)

    def html(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p, cycle) -> None:
        """IPython terminal display: the same text as the shell."""
        p.text(str(self))

    def _repr_html_(self) -> str:
        body = self.html()
        if self.figure is None:
            return body
        # a figure holding a photograph (detections) as JPEG: as PNG it alone is megabytes
        photo = any(ax.images for ax in self.figure.axes)
        data = self._encoded("jpeg" if photo else "png")
        return body + f'<img src="data:image/{"jpeg" if photo else "png"};base64,' \
                      f'{base64.b64encode(data).decode()}"/>'

    # No `_repr_png_`: Jupyter would store the figure a second time beside the HTML (which must
    # hold it, or the frontends, which show the HTML, would not show the figure).
    def png(self) -> bytes | None:
        """The figure as PNG bytes (None without a figure)."""
        return None if self.figure is None else self._encoded("png")

    def _encoded(self, fmt: str) -> bytes:
        buf = io.BytesIO()
        self.figure.savefig(buf, format=fmt, bbox_inches="tight",
                            **({"pil_kwargs": {"quality": 85}} if fmt == "jpeg" else {}))
        return buf.getvalue()


class Message(Result):
    """One or more lines of text (a confirmation, a short report)."""

    def __init__(self, text: str, *, data: Any = None, figure: Any = None) -> None:
        self._text = text.rstrip("\n")
        self.data = data
        self.figure = figure

    def text(self) -> str:
        return self._text


def _plain(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Column:
    """A table column: header, format for non-None values ('{:.6f}' or a function), alignment."""

    name: str
    fmt: str | Callable[[Any], str] | None = None
    align: str = "auto"   # "left", "right", or "auto" (right for numbers)

    def format(self, value: Any) -> str:
        if value is None:
            return "-"
        if self.fmt is None:
            return _plain(value)
        if callable(self.fmt):
            return self.fmt(value)
        return self.fmt.format(value)

    def right(self, values: Sequence[Any]) -> bool:
        if self.align != "auto":
            return self.align == "right"
        present = [v for v in values if v is not None]
        return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                     for v in present)


class Table(Result):
    """Rows under named columns, a title, optional notes below, and highlighted rows.

    Highlighted rows (e.g. cosines below a threshold) are marked `*` in text and coloured in HTML.
    """

    def __init__(self, title: str, columns: Sequence[Column | str], rows: Iterable[Sequence[Any]], *,
                 highlight: Iterable[int] = (), notes: Sequence[str] = (), data: Any = None,
                 figure: Any = None) -> None:
        self.title = title
        self.columns = [c if isinstance(c, Column) else Column(c) for c in columns]
        self.rows = [list(r) for r in rows]
        self.highlight = set(highlight)
        self.notes = list(notes)
        self.data = data
        self.figure = figure

    def records(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name (raw values, not formatted)."""
        return [dict(zip((c.name for c in self.columns), r)) for r in self.rows]

    def column(self, name: str) -> list[Any]:
        """The raw values of one column."""
        k = [c.name for c in self.columns].index(name)
        return [r[k] for r in self.rows]

    def _cells(self) -> list[list[str]]:
        return [[c.format(v) for c, v in zip(self.columns, r)] for r in self.rows]

    def text(self) -> str:
        cells = self._cells()
        widths = [max([len(c.name)] + [len(row[k]) for row in cells]) for k, c in enumerate(self.columns)]
        right = [c.right(self.column(c.name)) for c in self.columns]

        def line(values: Sequence[str], mark: str) -> str:
            parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
            return (mark + "  ".join(parts)).rstrip()

        mark = bool(self.highlight)
        out = [self.title] if self.title else []
        out.append(line([c.name for c in self.columns], "  " if mark else ""))
        out += [line(row, ("* " if i in self.highlight else "  ") if mark else "")
                for i, row in enumerate(cells)]
        out += self.notes
        return "\n".join(out)

    def html(self) -> str:
        cells = self._cells()
        right = [c.right(self.column(c.name)) for c in self.columns]
        esc = html.escape

        def td(tag: str, value: str, r: bool) -> str:
            return f'<{tag} style="text-align:{"right" if r else "left"}">{esc(value)}</{tag}>'

        head = "".join(td("th", c.name, r) for c, r in zip(self.columns, right))
        body = []
        for i, row in enumerate(cells):
            style = ' style="background-color:#fdd"' if i in self.highlight else ""
            body.append(f"<tr{style}>" + "".join(td("td", v, r) for v, r in zip(row, right)) + "</tr>")
        caption = f"<caption>{esc(self.title)}</caption>" if self.title else ""
        notes = "".join(f"<p>{esc(n)}</p>" for n in self.notes)
        return (f'<table class="tpushell">{caption}<thead><tr>{head}</tr></thead>'
                f'<tbody>{"".join(body)}</tbody></table>{notes}')
