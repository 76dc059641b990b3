"""tpushell: interactive workbench for mixed-precision quantization (see README.md).

`import tpushell` stays light: the shell (`tpushell.app`) imports cmd2, the IPython extension
(`%load_ext tpushell`) imports IPython only when loaded.
"""


def load_ipython_extension(ip) -> None:
    """`%load_ext tpushell`: the line magics over one Session (see tpushell.magics)."""
    from .magics import load_ipython_extension as load
    load(ip)


def unload_ipython_extension(ip) -> None:
    """`%unload_ext tpushell`: remove the magics, give back IPython's %load and %save."""
    from .magics import unload_ipython_extension as unload
    unload(ip)
