"""INT8 pooling (reference D.7): MaxPool moves codes (padding with the lowest code, as the chip)."""
from __future__ import annotations

from . import rule
from .shape import same_scale

rule("MaxPool")(same_scale)
