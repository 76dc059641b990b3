"""IPython line magics over one Session: the same commands and arguments as the tpushell shell.

    In [1]: %load_ext tpushell
    In [2]: %load tiny-yolov3-11.onnx --input_shapes [[1,3,416,416]] --output_names transpose_output1,transpose_output
    In [3]: t = %layers conv1*          # the Result object: t.records(), t.data
    In [4]: tpu.graph                   # the Session behind the magics, as a Python object

- `%load` replaces IPython's own `%load` (load code into a cell) and `%save` its `%save` (save
  cells to a file); `%unload_ext tpushell` gives them back.
- Arguments are split like a shell (shlex), so quoting works as in tpushell: `%load "my model.onnx"`.
- IPython expands `$var` and `{expr}` in magic lines first: `%infer $image`.
- Help: `%load?` or `%load -h`. Errors are one-line UsageErrors; the session is left unchanged,
  as after an interrupt (which prints "interrupted: nothing changed").
- Tab completes options, subcommands, choices, layer names, settings and paths, as in the shell.
"""
from __future__ import annotations

import argparse
import glob
import os
import shlex
import sys
from dataclasses import fields
from types import MethodType

from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class
from IPython.core.magic_arguments import MagicArgumentParser
from tpushell.core import Session
from tpushell.core.commands import (
    COMMANDS,
    INTERRUPTED,
    QUANTIZE_MODES,
    attempt,
    build_parser,
    completion_kinds,
)
from tpushell.core.results import Result


class HelpShown(Exception):
    """Raised by the parser after it printed the help for -h."""


class MagicParser(MagicArgumentParser):
    """IPython's magic parser with -h, and usage errors that say where the help is."""

    def __init__(self, **kwargs) -> None:
        # argparse's plain formatter: MagicHelpFormatter writes reST for IPython's own docs
        super().__init__(add_help=True, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog}?)")

    def exit(self, status: int = 0, message: str | None = None):
        if message:
            raise UsageError(message.strip())
        raise HelpShown


def magic_parser(name: str) -> MagicParser:
    """The parser of command `name` as IPython sees it (prog `%name`)."""
    return build_parser(name, MagicParser, prog=f"%{name}")


def _magic(name: str, parser: MagicParser):
    def magic(self: "TpuMagics", line: str) -> Result | None:
        return self.run(name, line)
    magic.__name__ = name
    magic.__doc__ = parser.format_help()
    return magic


@magics_class
class TpuMagics(Magics):
    """One line magic per command of `tpushell.core.commands`, all over the Session `tpu`."""

    def __init__(self, shell) -> None:
        super().__init__(shell)
        self.parsers = {name: magic_parser(name) for name in COMMANDS}
        for name, parser in self.parsers.items():
            self.magics["line"][name] = MethodType(_magic(name, parser), self)

    def session(self) -> Session:
        """The Session the magics work on: `tpu` in the user namespace."""
        found = self.shell.user_ns.get("tpu")
        if not isinstance(found, Session):
            raise UsageError("`tpu` is not a tpushell Session; set `tpu = tpushell.core.Session()` "
                             "or run `%reload_ext tpushell`")
        return found

    def run(self, name: str, line: str) -> Result | None:
        """Parse `line` for command `name`, run it on the session, return the Result."""
        try:
            argv = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"%{name}: cannot split the arguments: {e}") from None
        try:
            args = self.parsers[name].parse_args(argv)
        except HelpShown:
            return None
        outcome = attempt(self.session(), name, args, line)
        for w in outcome.warnings:
            print(f"warning: {w}", file=sys.stderr)
        if outcome.interrupted:          # Ctrl-C / the kernel's interrupt: no traceback
            print(INTERRUPTED, file=sys.stderr)
            return None
        if outcome.error is not None:
            raise UsageError(str(outcome.error))
        return outcome.result


def _action_at(parser: argparse.ArgumentParser, done: list[str]) -> tuple[argparse.ArgumentParser,
                                                                           argparse.Action | None]:
    """The (sub)parser and the argument that the next token fills, after the tokens `done`."""
    positionals = [a for a in parser._actions if not a.option_strings]
    options = {o: a for a in parser._actions for o in a.option_strings}
    index, waiting = 0, None
    for token in done:
        if waiting is not None:
            waiting = None
        elif token in options:
            waiting = options[token] if options[token].nargs != 0 else None
        elif not token.startswith("-") and index < len(positionals):
            action = positionals[index]
            if isinstance(action, argparse._SubParsersAction) and token in action.choices:
                return _action_at(action.choices[token], done[done.index(token) + 1:])
            if action.nargs not in ("+", "*"):
                index += 1
    return parser, waiting or (positionals[index] if index < len(positionals) else None)


def _values(session: Session, parser: argparse.ArgumentParser, action, done: list[str],
            word: str) -> list[str]:
    kind = completion_kinds(parser).get(action.dest)
    if action.choices:
        return [str(c) for c in action.choices]
    if kind in ("layer", "layer_then_mode") and session.graph is not None:
        modes = list(QUANTIZE_MODES) if kind == "layer_then_mode" and done else []
        return modes + session.graph.op_names + sorted(session.graph.summary())
    if kind == "setting":
        return [f.name for f in fields(session.settings)]
    if kind == "setting_value" and done:
        spec = {f.name: f for f in fields(session.settings)}.get(done[-1])
        return list(spec.metadata.get("choices") or ()) if spec else []
    if kind == "path":
        return [p + ("/" if os.path.isdir(p) else "") for p in glob.glob(os.path.expanduser(word) + "*")]
    return []


def complete_magic(session: Session, name: str, line: str) -> list[str]:
    """What Tab offers after `%name ...line`: options, subcommands, choices, layers, paths."""
    try:
        tokens = shlex.split(line)
    except ValueError:
        return []
    word = "" if not line or line[-1].isspace() else tokens.pop()
    parser, action = _action_at(build_parser(name), tokens)
    if word.startswith("-"):
        return [o for a in parser._actions for o in a.option_strings if o.startswith(word)]
    found = _values(session, parser, action, tokens, word) if action is not None else []
    return [v for v in found if v.startswith(word)]


def register_completers(ip) -> None:
    """IPython's completion hook for every magic of ours."""
    def completer(self, event) -> list[str]:
        name, _, rest = event.line.lstrip("%").partition(" ")
        magics = ip.find_line_magic(name)
        session = ip.user_ns.get("tpu")
        if name not in COMMANDS or not isinstance(getattr(magics, "__self__", None), TpuMagics) \
                or not isinstance(session, Session):
            return []
        return complete_magic(session, name, rest)
    for name in COMMANDS:
        ip.set_hook("complete_command", completer, str_key=f"%{name}")
