"""Parsing of option values the tools and the shell commands share ('[[1,3,416,416]]', '0,0,0',
'a,b', '0.99,0.90'); errors name the option and show a valid example."""
from __future__ import annotations

import ast
import math

from .errors import OptionError


def parse_shapes(text: str) -> list[list[int]]:
    """'[[1,3,416,416]]' or '1,3,416,416' -> [[1, 3, 416, 416]]."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        raise OptionError(f"--input_shapes '{text}' is not a list of shapes; expected e.g. "
                          "[[1,3,416,416]]") from None
    if isinstance(value, int):
        value = [[value]]
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        value = [list(value)]
    if not (isinstance(value, (list, tuple)) and value and all(
            isinstance(s, (list, tuple)) and s and all(isinstance(d, int) and d > 0 for d in s)
            for s in value)):
        raise OptionError(f"--input_shapes '{text}' is not a list of shapes of positive integers; "
                          "expected e.g. [[1,3,416,416]]")
    return [list(s) for s in value]


def parse_floats(text: str, option: str) -> list[float]:
    """'0.1,0.2,0.3' -> [0.1, 0.2, 0.3]."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise OptionError(f"{option} '{text}' must be comma-separated numbers, e.g. 0,0,0") from None
    if not all(math.isfinite(v) for v in values):
        raise OptionError(f"{option} '{text}' must be finite numbers (no nan or inf), e.g. 0,0,0")
    return values


def parse_names(text: str | None) -> list[str]:
    """'a,b' -> ['a', 'b']; None or '' -> []."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def parse_tolerance(text: str, option: str = "--tolerance") -> tuple[float, float]:
    """'0.99,0.90' -> (0.99, 0.90): minimum cosine and euclidean similarity."""
    values = parse_floats(text, option)
    if len(values) != 2:
        raise OptionError(f"{option} '{text}' needs two numbers 'cos,euclid', e.g. 0.99,0.90")
    return values[0], values[1]
