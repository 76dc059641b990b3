"""Transcripts replayed through both front ends: the shell and the IPython magics must print the
same lines (one command layer), including `error: ...` for domain errors.

Format (cmd2 3.x style): `(tpu) command` lines, the expected output lines below each, and `/regex/`
spans for volatile text. A line equal to the output passes as is (paths keep their slashes); only
lines that differ are read as patterns, where a literal slash is `\\/`. A line starting with `#` at the
top of the file or after a blank line or another comment is a comment (so tables whose header starts
with `#` stay output). Each file is one session, run in a folder where `zoo/` and `golden/` point at
the real data.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.txt"))
PROMPT = "(tpu) "


def parse_transcript(path: Path) -> list[tuple[int, str, list[str]]]:
    """[(line number, command, expected lines)]."""
    steps: list[tuple[int, str, list[str]]] = []
    previous = "blank"   # kind of the previous line: blank, comment, prompt or output
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        if raw.startswith("#") and previous in ("blank", "comment"):
            previous = "comment"
            continue
        if raw.startswith(PROMPT):
            steps.append((lineno, raw[len(PROMPT):], []))
            previous = "prompt"
            continue
        if steps:
            steps[-1][2].append(raw.rstrip())
        previous = "output" if raw.strip() else "blank"
    return steps


def line_pattern(expected: str) -> re.Pattern:
    """Literal text with /regex/ spans; `\\/` is a literal slash."""
    parts = re.split(r"(?<!\\)/((?:[^/\\]|\\.)*)(?<!\\)/", expected)
    literal = [re.escape(p.replace("\\/", "/")) for p in parts[::2]]
    spans = parts[1::2]
    body = "".join(lit + (f"(?:{spans[i]})" if i < len(spans) else "") for i, lit in enumerate(literal))
    return re.compile(body)


def check_step(where: str, command: str, expected: list[str], actual: list[str]) -> None:
    actual = [a.rstrip() for a in actual]
    while expected and not expected[-1]:
        expected = expected[:-1]
    detail = "\n".join(["expected:"] + expected + ["actual:"] + actual)
    assert len(actual) == len(expected), f"{where}: `{command}` printed {len(actual)} lines, " \
                                         f"expected {len(expected)}\n{detail}"
    for e, a in zip(expected, actual):
        assert e == a or line_pattern(e).fullmatch(a), f"{where}: `{command}`: line differs\n  expected: {e}\n" \
                                             f"  actual:   {a}\n{detail}"


def test_pattern_rules():
    assert line_pattern("took /[0-9.]+/ s").fullmatch("took 1.25 s")
    assert not line_pattern("took /[0-9]+/ s").fullmatch("took x s")
    assert line_pattern("a\\/b").fullmatch("a/b")
    assert not line_pattern("1.5").fullmatch("1x5")


@pytest.mark.zoo
@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(path, zoo_workdir, frontend):
    steps = parse_transcript(path)
    assert steps, f"{path} has no commands"
    for lineno, command, expected in steps:
        check_step(f"{path.name}:{lineno}", command, expected, frontend(command))
