"""IPython line magics over one Session: the same commands and arguments as the tpushell shell.

    In [1]: %load_ext tpushell
    In [2]: %load tiny-yolov3-11.onnx --input_shapes [[1,3,416,416]] --output_names transpose_output1,transpose_output
    In [3]: t = %layers conv1*          # the Result object: t.records(), t.data
    In [4]: tpu.graph                   # the Session behind the magics, as a Python object

- `%load` replaces IPython's own `%load` (load code into a cell) and `%save` its `%save` (save
  cells to a file); `%unload_ext tpushell` gives them back.
- Arguments are split like a shell (shlex), so quoting works as in tpushell: `%load "my model.onnx"`.
- IPython expands `$var` and `{expr}` in magic lines first: `%infer $image`.
- Help: `%load?` or `%load -h`. Errors are one-line UsageErrors; the session is left unchanged.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from types import MethodType

from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class
from IPython.core.magic_arguments import MagicArgumentParser

from tpushell.core import Session
from tpushell.core.commands import COMMANDS, attempt, build_parser
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
        if outcome.error is not None:
            raise UsageError(str(outcome.error))
        return outcome.result
