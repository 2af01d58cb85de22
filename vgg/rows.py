"""How the tables' rows name what they compare: nets, test scales, fusion members (shared by the
experiment harness that writes the rows and the findings that read them)."""
from __future__ import annotations

# Points: dense evaluation more than this worse than a centre crop of the same rescaled image is a
# measured dense penalty (findings.csv flags rows that rest on one).
DENSE_GAP_LIMIT = 3.0
# Table 5: the jittered nets at Q = 256, 384, 512 (paper pixels) by each evaluation method.
TABLE5_SCALES = [256, 384, 512]
TABLE5_METHODS = ["dense", "multi-crop", "multi-crop & dense"]


def net_name(config: str, train_scale: str) -> str:
    return f"{config}_S{train_scale}"


def members(models: str) -> list[tuple[str, list[int]]]:
    """'D/256-512/256;384;512 + E/...' -> [('D_S256-512', [256, 384, 512]), ...]."""
    out = []
    for m in models.split(" + "):
        config, train_scale, scales = m.strip().split("/")
        out.append((net_name(config, train_scale), scales_of(scales)))
    return out


def scales_of(text: str) -> list[int]:
    """'224;256;288' -> [224, 256, 288]."""
    return [int(s) for s in str(text).split(";")]
