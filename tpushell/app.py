"""tpushell: the interactive shell over one Session (cmd2, prompt_toolkit line editing).

    $ tpushell                                        # interactive: completion, history, help
    $ tpushell --script examples/yolov3_tiny.tps      # run a script, stop at the first error
    $ tpushell -c "load model.onnx" -c layers         # run commands, then exit

Every command comes from `tpushell.core.commands`; this module only adapts them to cmd2:
parsers are built from the command layer, results are printed as text, figures are saved to
files (and shown when a display exists), and core errors become one `error: ...` line.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from typing import Iterable, Iterator, Sequence

import cmd2

from tpushell.core import Session
from tpushell.core.commands import (COMMANDS, INTERRUPTED, SCRIPT_BUILTINS, attempt,
                                    build_parser, check_replayable, save_figure)
from tpushell.core.errors import TpuError, did_you_mean
from tpushell.core.fileio import FigureFolder, read_text
from tpushell.core.results import Result

from .completion import attach_completers
from .progressbar import ProgressBar

HISTORY_ENV = "TPUSHELL_HISTORY"   # history file; empty = no persistent history
DEFAULT_HISTORY = "~/.tpushell_history"
PROMPT = "(tpu) "
BANNER = ("tpushell: mixed-precision quantization, the TPU-MLIR tutorial's steps as commands.\n"
          "Start with `load MODEL.onnx` (model_transform's options work, e.g. --model_def), then\n"
          "`calibrate DATASET`, `cos`, `qtable search`, `deploy`, `detect`. `help` lists the commands,\n"
          "`help COMMAND` explains one, Tab completes; `quit` or Ctrl-D leaves.")


class ShellParser(cmd2.Cmd2ArgumentParser):
    """cmd2's parser with one-line usage errors that say where the help is."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see 'help {self.prog}')\n")


class LiveSettings:
    """The session's settings as a cmd2 settable object: reads and validated writes go to
    `shell.session.settings`, whatever object that is now (opening a workspace replaces it)."""

    def __init__(self, shell: "TpuShell") -> None:
        object.__setattr__(self, "_shell", shell)

    def __getattr__(self, name: str):
        return getattr(self._shell.session.settings, name)

    def __setattr__(self, name: str, value) -> None:
        self._shell.session.settings.set(name, value)


def _parser_factory(name: str):
    # cmd2 calls one-argument factories with the owner class, so this must take none
    return lambda: attach_completers(build_parser(name, ShellParser))


def _do_command(name: str):
    def do(self: "TpuShell", args: argparse.Namespace) -> None:
        self.run_command(name, args)
    do.__name__ = f"do_{name}"
    do.__qualname__ = f"TpuShell.do_{name}"   # cmd2 keys its parsers by qualified name
    do.__doc__ = COMMANDS[name].doc
    return cmd2.with_category(COMMANDS[name].category)(cmd2.with_argparser(_parser_factory(name))(do))


class TpuShell(cmd2.Cmd):
    """The tpushell application: `TpuShell(session).cmdloop()`."""

    def __init__(self, session: Session | None = None, *, plot_dir: str = ".",
                 history_file: str | None = None, **kwargs) -> None:
        if history_file is None:
            history_file = os.path.expanduser(os.environ.get(HISTORY_ENV, DEFAULT_HISTORY))
        super().__init__(allow_cli_args=False, include_ipy=True, persistent_history_file=history_file,
                         **kwargs)
        self.session = session if session is not None else Session(progress=ProgressBar())
        self.prompt = PROMPT
        self.plot_dir = plot_dir
        self.failed = False            # set by any error; scripts stop on it
        self.batch = False             # running a script or -c commands: never ask questions
        self._figures: FigureFolder | None = None
        self._saved_history: list[str] = list(self.session.history)   # journal at the last save/open
        self.py_locals["tpu"] = self.session
        self.add_settable(cmd2.Settable("plot_dir", str, "folder where plots are saved", self))
        live = LiveSettings(self)
        for f in fields(self.session.settings):
            self.add_settable(cmd2.Settable(f.name, int if f.type in ("int", int) else str,
                                            f.metadata.get("help", ""), live,
                                            choices=f.metadata.get("choices")))

    # ---- running commands -----------------------------------------------------------------------
    def run_command(self, name: str, args: argparse.Namespace) -> None:
        """Run a command-layer command and print its result, warnings and errors."""
        statement = args.cmd2_statement
        if name == "set" and self._is_shell_setting(args.name):
            cmd2.Cmd.do_set(self, statement)
            return
        outcome = attempt(self.session, name, args, statement.args)
        for w in outcome.warnings:
            self.pwarning(f"warning: {w}")
        if outcome.interrupted:
            self.perror(INTERRUPTED, style=None)
            raise KeyboardInterrupt          # back to the prompt; a script stops
        if outcome.error is not None:
            self.perror(f"error: {outcome.error}")
            return
        if name in ("save", "open"):
            self._saved_history = list(self.session.history)
        self.show(outcome.result)
        if name == "set" and args.name is None:
            shell_only = [n for n in self.settables if not self._is_session_setting(n)]
            self.poutput(f"shell settings: {', '.join(sorted(shell_only))} ('set NAME' shows one)")

    def show(self, result: Result) -> None:
        """Print a result; save its figure (and show it when a display exists)."""
        self.poutput(str(result))
        if result.figure is not None and result.figure_path is None:
            if self._figures is None or self._figures.base != self.plot_dir:
                self._figures = FigureFolder(self.plot_dir)   # a new folder per session
            path = save_figure(result.figure, self._figures.next())
            self.poutput(f"figure saved to {path}")
        has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        if result.figure is not None and sys.stdin.isatty() and has_display:
            self._display(result.figure)

    @staticmethod
    def _display(figure) -> None:
        import matplotlib.pyplot as plt
        manager = plt.figure().canvas.manager   # a pyplot window, then give it our figure
        manager.canvas.figure = figure
        figure.set_canvas(manager.canvas)
        plt.show(block=False)

    def _is_session_setting(self, name: str | None) -> bool:
        return name in {f.name for f in fields(self.session.settings)}

    def _is_shell_setting(self, name: str | None) -> bool:
        return name is not None and name in self.settables and not self._is_session_setting(name)

    # ---- leaving ----------------------------------------------------------------------------------
    def unsaved(self) -> int:
        """How many journal entries (state-changing commands) are not in a saved workspace."""
        saved, now = self._saved_history, self.session.history
        if now[:len(saved)] != saved:
            return len(now)
        return len(now) - len(saved)

    def do_quit(self, _=None) -> bool:
        """Exit tpushell; with unsaved work in an interactive session, ask first."""
        pending = self.unsaved()
        if pending and not self.batch and sys.stdin.isatty():
            try:
                answer = self.read_input(f"{pending} command(s) since the last save are not in a "
                                         "workspace; quit anyway? [y/N] ")
            except EOFError:
                answer = "y"
            if answer.strip().lower() not in ("y", "yes"):
                self.poutput("not quitting; `save NAME` keeps the work in NAME.tpw")
                return False
        self.last_result = True
        return True

    # ---- errors: one line each, and remembered so that scripts stop ----------------------------
    def perror(self, *objects, style=cmd2.Cmd2Style.ERROR, **kwargs) -> None:
        if style == cmd2.Cmd2Style.ERROR:
            self.failed = True
        super().perror(*objects, style=style, **kwargs)

    def pexcept(self, exception: BaseException, **kwargs) -> None:
        self.failed = True
        super().pexcept(exception, **kwargs)

    def default(self, statement: cmd2.Statement) -> None:
        self.perror(f"error: unknown command '{statement.command}'"
                    f"{did_you_mean(statement.command, self.get_visible_commands())}; "
                    "'help' lists the commands")

    def onecmd(self, statement, *, add_to_history: bool = True) -> bool:
        try:
            return super().onecmd(statement, add_to_history=add_to_history)
        except cmd2.Cmd2ArgparseError:
            self.failed = True
            raise

    # ---- batch mode -----------------------------------------------------------------------------
    def run_lines(self, lines: Iterable[tuple[str, str]]) -> int:
        """Run (where, line) pairs, echoing each as `(tpu) line`; 1 at the first error, else 0."""
        self.batch = True
        for where, line in lines:
            self.poutput(f"{PROMPT}{line}")
            self.failed = False
            try:
                check_replayable(line, SCRIPT_BUILTINS)   # no shell, py, alias, pipes, ...
            except TpuError as e:
                self.perror(f"error: {where}: {e}")
                return 1
            try:
                stop = self.onecmd_plus_hooks(line, raise_keyboard_interrupt=True)
            except KeyboardInterrupt:
                self.perror(f"interrupted at {where}")
                return 130
            if self.failed:
                self.perror(f"stopped at {where}: {line}")
                return 1
            if stop:
                break
        return 0


for _name in COMMANDS:
    setattr(TpuShell, f"do_{_name}", _do_command(_name))


def script_lines(path: str) -> Iterator[tuple[str, str]]:
    """Commands of a script: '#' comments and blank lines skipped, trailing '\\' joins lines."""
    pending, start = "", 0
    for lineno, raw in enumerate(read_text(path, "script").splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        start = start if pending else lineno
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        yield f"{path}:{start}", pending + line
        pending = ""
    if pending:
        yield f"{path}:{start}", pending.rstrip()


def main(argv: Sequence[str] | None = None) -> int:
    """The `tpushell` console script (`tpushell fetch ...` is `tpushell-fetch ...`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fetch"]:
        from .tools.fetch import main as fetch_main
        return fetch_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="tpushell", description="Interactive workbench for mixed-precision quantization. "
        "Without options it starts the interactive shell ('help' lists the commands).",
        epilog="tpushell fetch yolov3-tiny [--dest DIR]: get the tutorial's model on a machine "
               "without it (see tpushell fetch --help).")
    parser.add_argument("--script", metavar="FILE", help="run the commands in FILE, stop at the first error")
    parser.add_argument("-c", "--command", action="append", default=[], metavar="COMMAND",
                        help="run COMMAND (repeatable; after --script), then exit")
    parser.add_argument("--plot_dir", default=".", help="folder where plots are saved (default: .)")
    args = parser.parse_args(argv)
    if args.script and not os.path.isfile(args.script):
        parser.error(f"script not found: {args.script}")
    app = TpuShell(plot_dir=args.plot_dir)
    if args.script or args.command:
        try:
            lines = list(script_lines(args.script)) if args.script else []
        except TpuError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        lines += [(f"-c #{i}", c) for i, c in enumerate(args.command, 1)]
        return app.run_lines(lines)
    return app.cmdloop(intro=BANNER)


if __name__ == "__main__":
    sys.exit(main())
