"""Target chips: which precisions each runs, and what `fp_type auto` means (reference D.11).

    chip = get_chip("bm1684x")
    chip.float_type            # 'F16': ops without an INT8 rule, and fp_type auto
    resolve_fp_type(chip, "auto")   # 'F16'

INT8 numerics are simulated with the bm1684x rules of reference D for every chip (the CV18xx
range tweaks of D.1/D.2 are applied); bm1684 and CV18xx requantize differently on silicon, so
their INT8 results are approximations. The float types are exact for every chip.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import OptionError, did_you_mean

FLOAT_MODES = ("F32", "F16", "BF16")
MODES = ("INT8",) + FLOAT_MODES


@dataclass(frozen=True)
class Chip:
    """A chip: the quantize modes it runs, its default float type and its family."""

    name: str
    modes: tuple[str, ...]          # whole-model or per-op modes the hardware runs
    float_type: str                 # FLOAT_MAP: fp_type auto, and ops with no INT8 rule
    mix_fp_types: tuple[str, ...]   # the reference's chip_support_mix_fp_type (search float types)
    family: str                     # "bm168x" or "cv18xx" (numeric variants of D.1/D.2)

    @property
    def float_modes(self) -> tuple[str, ...]:
        return tuple(m for m in self.modes if m in FLOAT_MODES)


_CV18XX = dict(modes=("INT8", "BF16"), float_type="BF16", mix_fp_types=("BF16",), family="cv18xx")
CHIPS: dict[str, Chip] = {c.name: c for c in (
    Chip("bm1684x", ("INT8", "F16", "BF16", "F32"), "F16", ("F16", "F32"), "bm168x"),
    Chip("bm1684", ("INT8", "F32"), "F32", ("F32",), "bm168x"),
    Chip("bm1688", ("INT8", "F16", "BF16", "F32"), "F16", ("F16", "BF16", "F32"), "bm168x"),
    Chip("cv183x", **_CV18XX),
    Chip("cv182x", **_CV18XX),
    Chip("cv181x", **_CV18XX),
    Chip("cv180x", **_CV18XX),
)}
CHIP_NAMES = tuple(CHIPS)


def get_chip(name: str | Chip) -> Chip:
    """The chip called `name` (case-insensitive); OptionError listing the chips otherwise."""
    if isinstance(name, Chip):
        return name
    chip = CHIPS.get(str(name).lower())
    if chip is None:
        raise OptionError(f"unknown chip '{name}'{did_you_mean(str(name).lower(), CHIPS)}; "
                          f"supported: {', '.join(CHIPS)}")
    return chip


# what people type for the modes (other toolchains' spellings), for the "did you mean" hint
MODE_SPELLINGS = {"FP16": "F16", "FP32": "F32", "FLOAT16": "F16", "FLOAT32": "F32", "HALF": "F16",
                  "BFLOAT16": "BF16", "BFP16": "BF16", "I8": "INT8", "INT": "INT8"}


def suggest_mode(mode: str) -> str:
    """' (did you mean F16?)' for FP16 and the like, '' when no mode is close."""
    m = str(mode).upper()
    if m in MODE_SPELLINGS:
        return f" (did you mean {MODE_SPELLINGS[m]}?)"
    return did_you_mean(m, MODES)


def check_mode(chip: Chip, mode: str, where: str = "--quantize") -> str:
    """`mode` upper-cased if the chip runs it; OptionError naming `where` otherwise."""
    m = str(mode).upper()
    if m not in MODES:
        raise OptionError(f"{where}: unknown quantize mode '{mode}'{suggest_mode(m)}; tpushell "
                          f"simulates {', '.join(MODES)}")
    if m not in chip.modes:
        raise OptionError(f"{where}: chip {chip.name} has no {m}; it runs {', '.join(chip.modes)}")
    return m


def resolve_fp_type(chip: Chip, fp_type: str = "auto") -> str:
    """The float type for layers kept out of INT8: `auto` is the chip's own (D.11)."""
    if str(fp_type).lower() == "auto":
        return chip.float_type
    m = check_mode(chip, fp_type, "fp_type")
    if m not in FLOAT_MODES:
        raise OptionError(f"fp_type must be a float type (auto, {', '.join(chip.float_modes)}), "
                          f"got '{fp_type}'")
    return m
