"""The shell, the magics and the command layer expose the same commands with the same arguments."""
from __future__ import annotations

import argparse

from tpushell.core.commands import COMMANDS, build_parser, subparsers


def _signature(parser: argparse.ArgumentParser) -> list[tuple]:
    """What a user can type: every argument's dest, flags, nargs, choices and default (not -h),
    and the same for each subcommand."""
    own = sorted((a.dest, tuple(a.option_strings), str(a.nargs), tuple(a.choices or ()), repr(a.default))
                 for a in parser._actions if not isinstance(a, argparse._HelpAction))
    return own + [(name, _signature(sub)) for name, sub in sorted(subparsers(parser).items())]


def test_same_command_names(shell, ip):
    from tpushell.app import TpuShell
    from tpushell.magics.tpumagics import TpuMagics
    # quit is the shell's own (cmd2's, made to ask about unsaved work)
    ours = {name[3:] for name in vars(TpuShell) if name.startswith("do_")} - {"quit"}
    magics = {name for name, fn in ip.magics_manager.magics["line"].items()
              if isinstance(getattr(fn, "__self__", None), TpuMagics)}
    assert ours == set(COMMANDS) == magics
    assert set(COMMANDS) <= set(shell.get_all_commands())


def test_same_arguments(shell, ip):
    from tpushell.magics.tpumagics import TpuMagics
    magics = ip.find_line_magic("load").__self__
    assert isinstance(magics, TpuMagics)
    for name in COMMANDS:
        core = _signature(build_parser(name))
        assert _signature(shell.command_parsers.get(getattr(shell, f"do_{name}"))) == core, name
        assert _signature(magics.parsers[name]) == core, name


def test_every_command_has_help(shell, ip):
    for name, cmd in COMMANDS.items():
        assert cmd.doc and cmd.doc.endswith("."), name
        assert getattr(shell, f"do_{name}").__doc__ == cmd.doc
        assert cmd.doc in ip.find_line_magic(name).__doc__
        parser = build_parser(name)
        for p in [parser, *subparsers(parser).values()]:
            for action in p._actions:
                assert action.help, f"{name}: argument {action.dest} has no help"
