"""Image preprocessing exactly as the reference toolchain does it (reference A.1-A.2).

    cfg = PreprocessConfig(net_shape=(416, 416), scale=[0.0039216] * 3, pixel_format="rgb",
                           keep_aspect_ratio=True, pad_value=128)
    x = preprocess_images(["img.jpg"], cfg)       # float32 N x 3 x 416 x 416
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import OptionError

PIXEL_FORMATS = ("rgb", "bgr", "gray", "rgba")
CHANNEL_FORMATS = ("nchw", "nhwc", "none")
KEEP_RATIO_MODES = ("letterbox", "short_side_scale")
PAD_TYPES = ("center", "normal")


@dataclass
class PreprocessConfig:
    """How an image becomes the model input; stored with the model (the mlir's top.Input)."""

    net_shape: tuple[int, int] = (0, 0)          # H, W of the network input
    resize_dims: tuple[int, int] | None = None   # H, W to resize to before a center crop
    keep_aspect_ratio: bool = False
    keep_ratio_mode: str = "letterbox"
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    scale: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    pixel_format: str = "bgr"
    channel_format: str = "nchw"
    pad_value: int = 0
    pad_type: str = "center"

    def __post_init__(self) -> None:
        for name, value, valid in (("pixel_format", self.pixel_format, PIXEL_FORMATS),
                                   ("channel_format", self.channel_format, CHANNEL_FORMATS),
                                   ("keep_ratio_mode", self.keep_ratio_mode, KEEP_RATIO_MODES),
                                   ("pad_type", self.pad_type, PAD_TYPES)):
            if value not in valid:
                raise OptionError(f"--{name} '{value}' is not valid; choose one of "
                                  f"{', '.join(valid)}")
        self.net_shape = tuple(int(v) for v in self.net_shape)
        if self.resize_dims is not None:
            self.resize_dims = tuple(int(v) for v in self.resize_dims)
        self.mean = [float(v) for v in self.mean]
        self.scale = [float(v) for v in self.scale]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["net_shape"] = list(self.net_shape)
        d["resize_dims"] = list(self.resize_dims) if self.resize_dims else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
