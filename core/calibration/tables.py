"""Calibration tables, quantize tables (qtables) and loss tables in the reference's text formats
(C.6, E.5).

    cal = read_calibration_table("yolov3_cali_table")     # v1.3 or 1.30.2 style
    cal["conv0_Conv"].threshold
    write_calibration_table("out_table", cal)             # v1.3 style
    q = read_qtable("yolov3_qtable"); q["conv3_Conv"]      # 'F16'
    loss = read_loss_table("full_loss_table.txt")         # rows worst first, true cosines
"""
from __future__ import annotations

import datetime
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ..errors import CalibrationError, QuantizationError, TpuWarning
from ..fileio import FileGroup, atomic_write, read_text, require_file

QUANT_MODES = ("INT8", "UINT8", "INT4", "F16", "BF16", "F32", "W8F16", "W8BF16", "W4F16",
               "W4BF16", "W4INT8", "F8E4M3", "F8E5M2")
_ROW = re.compile(r"^(\S+)\s+([-+0-9.eEnaif]+)\s+([-+0-9.eEnaif]+)\s+([-+0-9.eEnaif]+)\s*$")


@dataclass
class CalRow:
    """One tensor's calibration: threshold and observed min / max."""

    threshold: float
    min: float
    max: float


@dataclass
class CalibrationTable:
    """Rows in op order plus the optional sections of the format (int4 thresholds, asym ops,
    per-channel weight scales). `header` keeps the comment lines read from a file."""

    rows: dict[str, CalRow] = field(default_factory=dict)
    int4_rows: dict[str, CalRow] = field(default_factory=dict)
    asym_ops: list[str] = field(default_factory=list)
    weight_scales: dict[str, list[float]] = field(default_factory=dict)
    header: dict[str, str] = field(default_factory=dict)
    path: str | None = None

    def __getitem__(self, name: str) -> CalRow:
        return self.rows[name]

    def __contains__(self, name: object) -> bool:
        return name in self.rows

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def same_rows(a: CalibrationTable | None, b: CalibrationTable) -> bool:
    """Whether two tables hold the same tensors with the same threshold, min and max, to the
    digits the file format keeps (a table read back from the file it was written to)."""
    if a is None or list(a.rows) != list(b.rows):
        return False
    return all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7)
               for name, r in a.rows.items()
               for x, y in zip((r.threshold, r.min, r.max), (b.rows[name].threshold,
                                                              b.rows[name].min, b.rows[name].max)))


def _number(text: str, path: str, lineno: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise CalibrationError(f"{path}:{lineno}: '{text}' is not a number") from None


def _content_lines(path: str, what: str) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) of every non-blank line of a UTF-8 text file."""
    for lineno, raw in enumerate(read_text(path, what).splitlines(), 1):
        if raw.strip():
            yield lineno, raw.strip()


# Beyond this an INT8 scale (threshold / 127) is no longer a meaningful float32 number.
MAX_THRESHOLD = 1e30


def check_row(row: CalRow, where: str) -> CalRow:
    """`row` if its numbers can quantize: threshold finite and > 0 (and at most MAX_THRESHOLD),
    min and max finite with min <= max; else CalibrationError naming `where` and the value."""
    import math
    t = row.threshold
    if not (math.isfinite(t) and 0 < t <= MAX_THRESHOLD):
        raise CalibrationError(f"{where}: threshold {t!r} is not valid; a threshold is a finite "
                               f"number > 0 and at most {MAX_THRESHOLD:g}")
    if not (math.isfinite(row.min) and math.isfinite(row.max)):
        raise CalibrationError(f"{where}: min {row.min!r} / max {row.max!r} must be finite numbers")
    if row.min > row.max:
        raise CalibrationError(f"{where}: min {row.min!r} is above max {row.max!r}")
    return row


def read_calibration_table(path: str | os.PathLike) -> CalibrationTable:
    """Parse every listed variant (v1.3, 1.30.2 headers, #int4_th, #asym_op, #weight_scale)."""
    path = require_file(path, "calibration table")
    table = CalibrationTable(path=path)
    section = "rows"
    seen: dict[tuple[str, str], int] = {}     # (section, tensor) -> first line, for duplicates
    for lineno, line in _content_lines(path, "calibration table"):
        low = line.lower()
        if low.startswith("#int4_th"):
            section = "int4"
            continue
        if low.startswith("#asym_op"):
            section = "asym"
            continue
        if low.startswith("#weight_scale"):
            section = "weight_scale_fp8" if "fp8" in low else "weight_scale"
            continue
        if low.startswith("#int4_op") or low.startswith("#tpu-mlir-fp8") or low.startswith("#mqbench-fp8"):
            section = "skip"
            continue
        if line.startswith("#"):
            m = re.match(r"#\s*([^:]+):\s*(.*)$", line)
            if m and section == "rows":
                table.header[m.group(1).strip()] = m.group(2).strip()
            continue
        tokens = line.split()
        if section == "asym":
            table.asym_ops.append(tokens[0])
            continue
        if section == "skip":
            continue
        if section.startswith("weight_scale"):
            if len(tokens) < 2:
                raise CalibrationError(f"{path}:{lineno}: weight scale line needs "
                                       f"'<op>_weight <count> s0 s1 ...', got '{line}'")
            count = _number(tokens[1], path, lineno)
            if not count.is_integer() or not 0 <= count <= len(tokens):
                raise CalibrationError(f"{path}:{lineno}: '{tokens[0]}' scale count "
                                       f"'{tokens[1]}' is not the number of scales listed")
            count = int(count)
            scales = [_number(t, path, lineno) for t in tokens[2:]]
            if not all(0 < v < float("inf") for v in scales):
                raise CalibrationError(f"{path}:{lineno}: '{tokens[0]}' has a scale that is not "
                                       "a finite number > 0")
            if len(scales) != count:
                raise CalibrationError(f"{path}:{lineno}: '{tokens[0]}' announces {count} scales "
                                       f"but lists {len(scales)}")
            if section == "weight_scale":
                table.weight_scales[tokens[0]] = scales
            continue
        m = _ROW.match(line)
        if not m:
            raise CalibrationError(f"{path}:{lineno}: expected '<op_name> <threshold> <min> <max>', "
                                   f"got '{line}'")
        name = m.group(1)
        row = check_row(CalRow(*(_number(m.group(i), path, lineno) for i in (2, 3, 4))),
                        f"{path}:{lineno}: '{name}'")
        first = seen.setdefault((section, name), lineno)
        if first != lineno:
            raise CalibrationError(f"{path}:{lineno}: '{name}' again (first on line {first}); "
                                   "a table gives each tensor once")
        (table.int4_rows if section == "int4" else table.rows)[name] = row
    if not table.rows:
        raise CalibrationError(f"{path}: no calibration rows found (expected lines "
                               "'<op_name> <threshold> <min> <max>')")
    return table


def format_calibration_table(table: CalibrationTable, *, sample_number: int | None = None,
                             tune_number: int | None = None, histogram_bins: int | None = None,
                             when: datetime.datetime | None = None) -> str:
    """The v1.3 text (the misspelt 'genetated' is the original's), rows '%.7f'.

    Header numbers not given are taken from `table.header` (what calibration or a read recorded).
    A method other than kl is named in a comment line, as 1.30.2 does.
    """
    when = when or datetime.datetime.now()
    header = table.header
    sample_number = header.get("sample number") if sample_number is None else sample_number
    tune_number = header.get("tune number") if tune_number is None else tune_number
    histogram_bins = header.get("histogram number", 2048) if histogram_bins is None else histogram_bins
    lines = [f"# genetated time: {when}"]
    method = header.get("quantization threshold calculation method", "kl")
    if method.strip("[]'\"") != "kl":
        lines.append(f"# quantization threshold calculation method: {method}")
    lines.append(f"# histogram number: {histogram_bins}")
    if sample_number is not None:
        lines.append(f"# sample number: {sample_number}")
    if tune_number is not None:
        lines.append(f"# tune number: {tune_number}")
    lines += ["###", "# op_name    threshold    min    max"]
    for name, row in table.rows.items():
        lines.append(f"{name} {row.threshold:.7f} {row.min:.7f} {row.max:.7f}")
    if table.int4_rows:
        lines += ["", "#int4_th"]
        lines += [f"{n} {r.threshold:.7f} {r.min:.7f} {r.max:.7f}" for n, r in table.int4_rows.items()]
    if table.asym_ops:
        lines += ["", "#asym_op"] + list(table.asym_ops)
    if table.weight_scales:
        lines += ["", "#weight_scale"]
        lines += [" ".join([n, str(len(v))] + [repr(float(x)) for x in v])
                  for n, v in table.weight_scales.items()]
    return "\n".join(lines) + "\n"


def write_calibration_table(path: str | os.PathLike, table: CalibrationTable, *,
                            group: FileGroup | None = None,
                            **header) -> None:
    """Write `table` atomically in the v1.3 format (see format_calibration_table); with
    `group`, renamed when the group commits."""
    with (group.open(path) if group is not None else atomic_write(path)) as f:
        f.write(format_calibration_table(table, **header))


# ---- qtables ------------------------------------------------------------------------------------
@dataclass
class QTable:
    """Per-op precision overrides, in file order: {op_name: MODE}; `lines` maps an op to its
    line number in the file it was read from (for error messages)."""

    modes: dict[str, str] = field(default_factory=dict)
    path: str | None = None
    lines: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str:
        return self.modes[name]

    def __contains__(self, name: object) -> bool:
        return name in self.modes

    def __iter__(self) -> Iterator[str]:
        return iter(self.modes)

    def __len__(self) -> int:
        return len(self.modes)

    def items(self) -> Iterable[tuple[str, str]]:
        return self.modes.items()


def read_qtable(path: str | os.PathLike) -> QTable:
    """Parse a qtable: blank and '#' lines skipped, '<op> <MODE>' pairs. Modes are
    case-insensitive; an unknown mode names its line. What the compiler passes over silently (a
    line without a mode, text after the mode, an op given twice: the later line wins) is accepted
    the same way, with a warning naming the line."""
    path = require_file(path, "quantize table")
    q = QTable(path=path)
    notes: list[str] = []                     # warned about once the whole file has parsed
    for lineno, raw in enumerate(read_text(path, "quantize table").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) < 2:
            notes.append(f"{path}:{lineno}: '{tokens[0]}' has no quantize mode; line ignored")
            continue
        mode = tokens[1].upper()
        if mode not in QUANT_MODES:
            raise QuantizationError(f"{path}:{lineno}: unknown quantize mode '{tokens[1]}' for "
                                    f"'{tokens[0]}'; valid: {', '.join(QUANT_MODES)}")
        if len(tokens) > 2:
            notes.append(f"{path}:{lineno}: text after the mode ignored: '{' '.join(tokens[2:])}'")
        if tokens[0] in q.modes:
            notes.append(f"{path}:{lineno}: '{tokens[0]}' again (first on line "
                         f"{q.lines[tokens[0]]}); this line's {mode} wins")
        q.modes[tokens[0]] = mode
        q.lines[tokens[0]] = lineno
    for note in notes:
        warnings.warn(TpuWarning(note), stacklevel=2)
    return q


def format_qtable(q: QTable, *, chip: str, sample_number: int | None = None,
                  mix_mode: str = "F16", when: datetime.datetime | None = None) -> str:
    """The v1.3 qtable text (E.5)."""
    when = when or datetime.datetime.now()
    lines = [f"# genetated time: {when}"]
    if sample_number is not None:
        lines.append(f"# sample number: {sample_number}")
    lines += [f"# chip: {chip}  mix_mode: {mix_mode}",
              f"# number of {mix_mode} layer: {sum(1 for m in q.modes.values() if m == mix_mode)}",
              "###", "# op_name   quantize_mode"]
    lines += [f"{name} {mode}" for name, mode in q.modes.items()]
    return "\n".join(lines) + "\n"


def write_qtable(path: str | os.PathLike, q: QTable, *, group: FileGroup | None = None,
                 **header) -> None:
    """Write `q` atomically in the v1.3 format (see format_qtable); with `group`, renamed
    when the group commits."""
    with (group.open(path) if group is not None else atomic_write(path)) as f:
        f.write(format_qtable(q, **header))


@dataclass
class QTableDiff:
    """What differs between two qtables (a missing op means INT8, the default)."""

    a: str
    b: str
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.changed)

    def __str__(self) -> str:
        if not self.changed:
            return f"{self.a} and {self.b} set the same precisions"
        lines = [f"{len(self.changed)} layer(s) differ: {self.a} -> {self.b}"]
        lines += [f"  {op:<44} {ma:<5} -> {mb}" for op, (ma, mb) in self.changed.items()]
        return "\n".join(lines)


def diff_qtables(a: QTable, b: QTable, default: str = "INT8") -> QTableDiff:
    """Per op, the modes of `a` and `b` where they differ (ops in a's order, then b's)."""
    ops = list(dict.fromkeys(list(a.modes) + list(b.modes)))
    changed = {op: (a.modes.get(op, default), b.modes.get(op, default)) for op in ops
               if a.modes.get(op, default) != b.modes.get(op, default)}
    return QTableDiff(a.path or "qtable a", b.path or "qtable b", changed)


# ---- loss tables --------------------------------------------------------------------------------
@dataclass
class LossRow:
    """One candidate layer: its accumulated-error cosine to F32 (true cosine) in the plan current
    when the search passed it, and whether the search tested it against min_layer_cos."""

    layer: str
    cos: float
    visited: bool = True


@dataclass
class LossTable:
    """Rows worst first, as the reference writes them (E.4, E.5); cosines held as true cosines."""

    rows: list[LossRow] = field(default_factory=list)
    sample_number: int | None = None
    chip: str | None = None
    mix_mode: str | None = None
    path: str | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[LossRow]:
        return iter(self.rows)

    def __str__(self) -> str:
        lines = [f"loss table: {len(self.rows)} layer(s), {self.sample_number or '?'} sample(s); "
                 f"accumulated cosine to F32 (true, and the reference's 0.5+0.5*cos)"]
        for i, r in enumerate(self.rows):
            mark = "" if r.visited else "  (not tested)"
            lines.append(f"No.{i:<4} {r.layer:<44} {r.cos:.6f}  {0.5 + 0.5 * r.cos:.6f}{mark}")
        return "\n".join(lines)

    def sorted(self, key: str = "cos") -> "LossTable":
        """A copy ordered by `cos` (worst first) or by `layer` name."""
        if key not in ("cos", "layer"):
            raise QuantizationError(f"cannot sort a loss table by '{key}'; use cos or layer")
        rows = sorted(self.rows, key=(lambda r: r.cos) if key == "cos" else (lambda r: r.layer))
        return LossTable(rows, self.sample_number, self.chip, self.mix_mode, self.path)


_LOSS_ROW = re.compile(r"^No\.\s*(\d+)\s*:\s*Layer:\s*(\S+)\s+Cos:\s*([-+0-9.eEnaif]+)\s*$")
# The file holds the reference's 0.5 + 0.5*cos; this header line says so in files we write.
_LOSS_SCALE_NOTE = "# Cos column: reference scale 0.5+0.5*cos"
_LOSS_UNVISITED_NOTE = "# not tested against min_layer_cos (float already, no INT8 consumer or past the stop)"


def format_loss_table(table: LossTable, when: datetime.datetime | None = None) -> str:
    """The reference's loss-table text: rows worst first, `Cos` in its 0.5+0.5*cos scale."""
    when = when or datetime.datetime.now()
    lines = [f"# genetated time: {when}"]
    if table.sample_number is not None:
        lines.append(f"# sample number: {table.sample_number}")
    lines.append(f"# chip: {table.chip or '-'}  mix_mode: {table.mix_mode or '-'}")
    lines.append(_LOSS_SCALE_NOTE)
    unvisited = [r.layer for r in table.rows if not r.visited]
    if unvisited:
        lines.append(f"{_LOSS_UNVISITED_NOTE}: {' '.join(unvisited)}")
    lines.append("###")
    return "\n".join(lines + loss_rows(table)) + "\n"


def loss_rows(table: LossTable) -> list[str]:
    """The row lines of the reference's loss-table format, worst first (also what run_qtable
    prints)."""
    return [f"No.{i:<4}: Layer: {r.layer:<50}\t\t\tCos: {0.5 + 0.5 * r.cos:.6f}"
            for i, r in enumerate(table.sorted("cos").rows)]


def write_loss_table(path: str | os.PathLike, table: LossTable, *,
                     group: FileGroup | None = None,
                     **header) -> None:
    """Write `table` atomically in the reference's format (see format_loss_table); with
    `group`, renamed when the group commits."""
    with (group.open(path) if group is not None else atomic_write(path)) as f:
        f.write(format_loss_table(table, **header))


def read_loss_table(path: str | os.PathLike) -> LossTable:
    """Parse a loss table written by the reference or by us; cosines come back as true cosines."""
    path = require_file(path, "loss table")
    table = LossTable(path=path)
    unvisited: set[str] = set()
    for lineno, line in _content_lines(path, "loss table"):
        if line.startswith("#"):
            m = re.match(r"#\s*sample number:\s*(\d+)", line)
            if m:
                table.sample_number = int(m.group(1))
            m = re.match(r"#\s*chip:\s*(\S+)(?:\s+mix_mode:\s*(\S+))?", line)
            if m:
                table.chip, table.mix_mode = m.group(1), m.group(2)
            if line.startswith(_LOSS_UNVISITED_NOTE):
                unvisited.update(line.split(":", 1)[1].split())
            continue
        m = _LOSS_ROW.match(line)
        if not m:
            raise QuantizationError(f"{path}:{lineno}: expected 'No.<i> : Layer: <name> Cos: "
                                    f"<value>', got '{line}'")
        try:
            cos = 2.0 * float(m.group(3)) - 1.0
        except ValueError:
            raise QuantizationError(f"{path}:{lineno}: '{m.group(3)}' is not a number") from None
        if not -1.0 <= cos <= 1.0:   # NaN too
            raise QuantizationError(f"{path}:{lineno}: Cos {m.group(3)} is outside the reference "
                                    "scale [0, 1]")
        table.rows.append(LossRow(m.group(2), cos, m.group(2) not in unvisited))
    return table
