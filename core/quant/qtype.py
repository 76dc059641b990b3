"""How a tensor is held in a quantization plan, and the casts between representations (D.3, D.10).

Representation of values (what `Step.run` takes and returns):
- `int8` / `uint8`: integer codes in np.int8 / np.uint8 arrays; real value = scale * (q - zp).
- `f32`: float32 arrays. `f16` / `bf16`: float32 arrays holding values exactly representable in
  that type (every op rounds its output).
- `raw`: non-float tensors (indices, masks) passed through unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import quantmath as qm
from .ranges import Range

FLOAT_KINDS = {"F32": "f32", "F16": "f16", "BF16": "bf16"}
SUFFIX = {"int8": "si8", "uint8": "ui8", "f32": "f32", "f16": "f16", "bf16": "bf16"}
ROUND = {"f32": lambda v: np.asarray(v, np.float32), "f16": qm.to_f16, "bf16": qm.to_bf16}


@dataclass(frozen=True)
class QType:
    """A tensor's representation: kind, and for integer kinds the scale and zero point."""

    kind: str
    scale: float = 1.0
    zp: int = 0

    @property
    def is_int(self) -> bool:
        return self.kind in ("int8", "uint8")

    @property
    def is_float(self) -> bool:
        return self.kind in ROUND

    @property
    def signed(self) -> bool:
        return self.kind == "int8"

    @property
    def suffix(self) -> str:
        """The reference's cast-name suffix for this type (`si8`, `ui8`, `f16`, ...)."""
        return SUFFIX[self.kind]

    def dequantize(self, v: np.ndarray) -> np.ndarray:
        """Values as float32 (integer codes times the scale; floats unchanged)."""
        if self.is_int:
            return qm.dequantize(v, self.scale, self.zp)
        return v

    def __str__(self) -> str:
        if self.is_int:
            zp = f" zp={self.zp}" if self.zp else ""
            return f"{self.kind} scale={self.scale:.6g}{zp}"
        return self.kind


F32 = QType("f32")
RAW = QType("raw")


def float_qtype(mode: str) -> QType:
    """The QType of a float mode name (F32, F16, BF16)."""
    return QType(FLOAT_KINDS[mode])


def int_qtype(r: Range, asymmetric: bool = False) -> QType:
    """The int8/uint8 type of a calibrated range: symmetric th/127 or th/255 (D.3)."""
    if asymmetric:
        scale, zp, signed = qm.asymmetric_params(r.min, r.max)
        return QType("int8" if signed else "uint8", scale, zp)
    signed = r.signed
    return QType("int8" if signed else "uint8", qm.scale_of(r.threshold, signed), 0)


def cast(v: np.ndarray, src: QType, dst: QType) -> np.ndarray:
    """A tpu.Cast between a float type and an integer type, or between float types."""
    if dst.is_int:
        fn = {"f32": qm.quantize, "f16": qm.quantize_from_f16, "bf16": qm.quantize_from_bf16}[src.kind]
        return fn(v, dst.scale, dst.signed, dst.zp)
    if src.is_int:
        fn = {"f32": qm.dequantize, "f16": qm.dequantize_to_f16,
              "bf16": qm.dequantize_to_bf16}[dst.kind]
        return fn(v, src.scale, src.zp)
    return ROUND[dst.kind](v)


def requant_params(src: QType, dst: QType) -> tuple[int, int]:
    """(multiplier, shift) of the int -> int requant between two scales: 8-bit MulShift when
    symmetric (D.8); with zero points the 32-bit multiplier of RequantInt."""
    if src.zp or dst.zp:
        return qm.get_scale_and_shift(src.scale / dst.scale, 32)
    return qm.get_scale_and_shift(src.scale / dst.scale, 8, positive_only=True)
