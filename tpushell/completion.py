"""Tab completion for the shell: the core's completion kinds turned into cmd2 completers.

Providers are plain functions taking the app (cmd2 passes it), so they always read the live session.
"""
from __future__ import annotations

import argparse
from dataclasses import fields

import cmd2
from cmd2 import Choices, CompletionItem, Completions
from cmd2.utils import to_bool

from tpushell.core.commands import QUANTIZE_MODES, completion_kinds, subparsers


def layer_choices(app) -> Choices:
    """Op names of the loaded model (op type as the hint), then the op types themselves."""
    graph = app.session.graph
    if graph is None:
        return Choices(items=[])
    items = [CompletionItem(n.name, display_meta=n.op_type) for n in graph.nodes]
    items += [CompletionItem(t, display_meta=f"all {k} {t} layers") for t, k in graph.summary().items()]
    return Choices(items=items)


def layer_then_mode_choices(app, arg_tokens: dict[str, list[str]]) -> Choices:
    """Layers, and the precisions once a layer is typed (`set_precision conv1* F16`)."""
    items = layer_choices(app).items
    if len(arg_tokens.get("layers", [])) > 1:      # the last token is the one being completed
        items = [CompletionItem(m, display_meta="precision") for m in QUANTIZE_MODES] + list(items)
    return Choices(items=items)


def setting_choices(app) -> Choices:
    """Session settings (with their meaning) and the shell's own settables."""
    items = [CompletionItem(f.name, display_meta=f.metadata.get("help", ""))
             for f in fields(app.session.settings)]
    known = {i.text for i in items}
    items += [CompletionItem(name, display_meta=s.description)
              for name, s in app.settables.items() if name not in known]
    return Choices(items=items)


def setting_value_complete(app, text: str, line: str, begidx: int, endidx: int,
                           arg_tokens: dict[str, list[str]]) -> Completions:
    """Values of the setting named before: its choices, or true/false for the shell's switches."""
    settable = app.settables.get(arg_tokens["name"][0])
    choices = settable.choices if settable is not None else None
    if choices is None and settable is not None and settable.val_type is to_bool:
        choices = ["true", "false"]
    return app.basic_complete(text, line, begidx, endidx, [str(c) for c in choices or ()], sort=False)


PROVIDERS = {"layer": layer_choices, "layer_then_mode": layer_then_mode_choices,
             "setting": setting_choices}
COMPLETERS = {"path": cmd2.Cmd.path_complete, "setting_value": setting_value_complete}


def attach_completers(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give each argument of `parser` (and of its subcommands) the completer for its kind."""
    for sub in subparsers(parser).values():
        attach_completers(sub)
    kinds = completion_kinds(parser)
    for action in parser._actions:
        kind = kinds.get(action.dest)
        if kind in PROVIDERS:
            action.set_choices_provider(PROVIDERS[kind])
        elif kind in COMPLETERS:
            action.set_completer(COMPLETERS[kind])
    return parser
