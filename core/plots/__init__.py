"""matplotlib figure builders, one module per area; each returns a Figure and never shows it.

matplotlib is imported inside the functions, so `import tpushell.core` stays light.
"""
