"""A tiny darknet cfg using every layer kind the importer supports, and writing weights for it."""
from __future__ import annotations

import numpy as np

# every layer kind and option the importer supports, at 32x32 (heads 8x8 and 16x16, 2 classes)
TINY_CFG = """\
[net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[maxpool]
size=2
stride=1

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 3,4,5
anchors = 2,3, 4,5, 6,7, 8,9, 10,11, 12,13
classes=2
num=6

[route]
layers = -3

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=relu

[upsample]
stride=2

[route]
layers = -1, 2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
groups=2
activation=leaky

[shortcut]
from=2
activation=linear

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 0,1,2
anchors = 2,3, 4,5, 6,7, 8,9, 10,11, 12,13
classes=2
num=6
"""


def conv_layers(cfg_text: str) -> list[dict]:
    """(filters, in channels / groups, size, bn) of each [convolutional], tracking channels."""
    sections, channels, out = [], [], []
    for block in cfg_text.split("[")[1:]:
        kind, body = block.split("]", 1)
        opts = dict(line.split("=", 1) for line in body.splitlines() if "=" in line)
        sections.append((kind, {k.strip(): v.strip() for k, v in opts.items()}))
    c = int(sections[0][1]["channels"])
    for i, (kind, o) in enumerate(sections[1:]):
        if kind == "convolutional":
            groups = int(o.get("groups", 1))
            out.append({"filters": int(o["filters"]), "cin": c // groups, "size": int(o["size"]),
                        "bn": o.get("batch_normalize") == "1"})
            c = int(o["filters"])
        elif kind == "route":
            refs = [int(v) for v in o["layers"].split(",")]
            c = sum(channels[r if r >= 0 else i + r] for r in refs)
        channels.append(c)
    return out


def write_weights(path, convs: list[dict], rng, version=(0, 2, 0), extra: int = 0) -> list[dict]:
    """A darknet weights file with random values; returns them per conv for the reference."""
    major, minor, rev = version
    seen = np.array([1234], "<i8" if major * 10 + minor >= 2 else "<i4")
    params, chunks = [], []
    for cv in convs:
        n = cv["filters"]
        p = {"bias": rng.normal(0, 0.5, n).astype(np.float32)}
        chunks.append(p["bias"])
        if cv["bn"]:
            p["gamma"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
            p["mean"] = rng.normal(0, 0.3, n).astype(np.float32)
            p["var"] = rng.uniform(0.5, 2.0, n).astype(np.float32)
            chunks += [p["gamma"], p["mean"], p["var"]]
        p["w"] = rng.normal(0, 0.3, (n, cv["cin"], cv["size"], cv["size"])).astype(np.float32)
        chunks.append(p["w"].ravel())
        params.append(p)
    chunks.append(np.zeros(extra, np.float32))
    with open(path, "wb") as f:
        f.write(np.array([major, minor, rev], "<i4").tobytes() + seen.tobytes())
        f.write(np.concatenate(chunks).astype("<f4").tobytes())
    return params
