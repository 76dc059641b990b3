"""The IPython extension: `%load_ext tpushell` (or `%load_ext tpushell.magics`).

It registers one line magic per shell command (see `tpumagics`) over the Session `tpu` in the
user namespace (created if absent, reused if present: the shell's `ipy` command passes its own).
IPython is imported only here, when the extension is loaded.
"""
from __future__ import annotations

SHADOWED = ("load", "save")   # IPython built-ins our commands replace while the extension is loaded


def load_ipython_extension(ip) -> None:
    """Register the magics on `ip` and make sure `tpu` holds a Session."""
    from IPython.core.error import UsageError

    from tpushell.core import Session
    from tpushell.progressbar import ProgressBar

    from .tpumagics import TpuMagics, register_completers

    session = ip.user_ns.get("tpu")
    if session is None:
        ip.push({"tpu": Session(progress=ProgressBar())})
    elif not isinstance(session, Session):
        raise UsageError("`tpu` already names something that is not a tpushell Session; rename it "
                         "and run %load_ext tpushell again")
    # IPython loads its built-in magics lazily: load the ones we shadow now, or their late
    # registration would replace ours; keep them to give back on unload
    ip._tpushell_shadowed = {name: ip.find_line_magic(name) for name in SHADOWED}
    ip.register_magics(TpuMagics(ip))
    register_completers(ip)


def unload_ipython_extension(ip) -> None:
    """Remove our magics and give back the IPython built-ins they replaced."""
    from tpushell.core.commands import COMMANDS

    magics = ip.magics_manager.magics["line"]
    for name in COMMANDS:
        magics.pop(name, None)
    for name, fn in getattr(ip, "_tpushell_shadowed", {}).items():
        if fn is not None:
            magics[name] = fn
