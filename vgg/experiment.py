"""What the numbered experiment scripts share: arguments, the checkpoints they need
(built through the init chain when missing), cached posteriors, output paths."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from .chain import BY_NAME, build_chain, checkpoint_path
from .checkpoint import load_metadata
from .data import data_root
from .datasets import cache_folder, val_subset
from .errors import Divergence, UserError
from .evaluate import cached_posteriors, fuse
from .loaders import load_datasets
from .metrics import topk_error
from .model import feature_size
from .plateau import drops_taken
from .protocol import PRESETS, get_preset
from .results import paper_table
from .rows import DENSE_GAP_LIMIT, TABLE5_METHODS, TABLE5_SCALES, members, net_name, scales_of  # noqa: F401
from .runtime import setup_distributed
from .train import TrainSpec, train


def arguments(description: str, needs_data: bool = True, extra=None) -> argparse.Namespace:
    from .__main__ import Parser
    p = Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=os.environ.get("PRESET", "proxy"), help=" | ".join(PRESETS))
    if needs_data:
        p.add_argument("--data", help="dataset root (default $VGG_DATA)")
        p.add_argument("--runs", default=os.environ.get("VGG_RUNS", "runs"), help="checkpoint folder")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--loader", help="memory | stream (default: the preset's)")
        p.add_argument("--workers", type=int, help="DataLoader workers (default: the preset's, capped at the CPUs)")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    if needs_data:
        p.add_argument("--per-seed", action="store_true",
                       help="write into results/<preset>/seed<k>/ (the reproduction's tables of one seed)")
    p.add_argument("--figures", default="figures", help="figures folder (default figures/)")
    if extra:
        extra(p)
    return p.parse_args()


def comma_list(kind=str):
    """An argparse ``type``: '0,1,2' -> [0, 1, 2]; a bad or empty list is a one-line error (exit 2)."""
    def parse(text: str) -> list:
        try:
            out = [kind(t.strip()) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated {kind.__name__} values, "
                                             "e.g. 0,1,2") from None
        if not out:
            raise argparse.ArgumentTypeError("give at least one value")
        return out
    parse.__name__ = f"list of {kind.__name__}"
    return parse


def main(fn, needs_data: bool = True, extra=None) -> None:
    """Run an experiment's main; user errors give one line and exit 2.
    ``extra(parser)`` adds a script's own flags."""
    try:
        args = arguments(sys.modules[fn.__module__].__doc__ or "", needs_data, extra)
        if needs_data:  # under torchrun: join the group, so each rank evaluates its slice of the images
            setup_distributed()
        fn(args)
    except (UserError, Divergence) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


class Experiment:
    """Checkpoints and posteriors of one preset."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.preset = get_preset(args.preset, loader=getattr(args, "loader", None),
                                 workers=getattr(args, "workers", None))
        self.root = data_root(args.data)
        self._data = None

    @property
    def data(self):
        if self._data is None:
            self._data = load_datasets(self.root, self.preset, cache_dir=cache_folder(self.args.runs))
        return self._data

    def checkpoint(self, net: str, seed: int | None = None) -> Path:
        """``net``'s checkpoint of ``seed`` (default: this experiment's seed), trained first if missing."""
        seed = self.args.seed if seed is None else seed
        build_chain(self.preset.name, str(self.root), self.args.runs, seed=seed, only=[net],
                    progress=sys.stderr.isatty(), log=lambda m: print(m, file=sys.stderr),
                    loader=getattr(self.args, "loader", None), workers=getattr(self.args, "workers", None))
        return checkpoint_path(self.args.runs, self.preset.name, net, seed)

    def continued(self, net: str, chain: Path, epochs: int, study: str) -> Path:
        """The chain's checkpoint ``chain`` of ``net`` continued to ``epochs`` epochs as
        runs/<preset>/<study>/<net>_<epochs>ep.pt: same seed and lr rule, optimiser and lr state from
        the checkpoint, so it is the run a preset with that many epochs would give. Resumes an
        interrupted run."""
        n = BY_NAME[net]
        out = Path(self.args.runs) / self.preset.name / study / f"{net}_{epochs}ep.pt"
        start = "auto" if out.exists() else str(chain)
        train(TrainSpec(config=n.config, scale=n.scale, preset=self.preset.name, data=str(self.root), out=str(out),
                        runs=str(self.args.runs), resume=start, lr=load_metadata(chain)["spec"]["lr"],
                        seed=self.args.seed, epochs=epochs, progress=sys.stderr.isatty()))
        return out

    @property
    def multi_crop_subset(self):
        """Validation indices Tables 5-6 use (the preset's ``multi_crop_images``), or None for all."""
        return val_subset(len(self.data.val), self.preset.multi_crop_images)

    def posteriors(self, net: str, method: str, scales_paper: list[int], multi_crop_subset: bool = False):
        """Cached posteriors; ``multi_crop_subset``: on the images Tables 5-6 use (all by default)."""
        subset = self.multi_crop_subset if multi_crop_subset else None
        return cached_posteriors(self.checkpoint(net), method, scales_paper, self.data, subset=subset)

    def dense_vs_crop_rows(self, path: Path, scales_paper) -> list[dict]:
        """One checkpoint scored as dense_geometry scores a net: dense and centre-crop top-1 error of
        the same rescaled images at each test scale (paper pixels), and their difference."""
        rows = []
        for q in sorted(scales_paper):
            dense, crop = (100 * self.errors(*cached_posteriors(path, m, [q], self.data))[0]
                           for m in ("dense", "center-crop"))
            rows.append({"evaluation": "dense vs centre crop", "test_scales": str(q),
                         "test_scales_px": str(self.preset.px(q)), "conv5_map": self.conv5_map(q),
                         "images": len(self.data.val), "ours_top1_err": round(dense, 2),
                         "center_crop_top1_err": round(crop, 2), "dense_minus_crop": round(dense - crop, 2)})
        return rows

    def table5_rows(self, path: Path) -> list[dict]:
        """One jittered checkpoint scored as Table 5 scores it: dense, multi-crop and both at
        Q = 256, 384, 512, on the preset's multi-crop subset."""
        subset, rows = self.multi_crop_subset, []
        for method in TABLE5_METHODS:
            e1, e5 = self.errors(*cached_posteriors(path, method, TABLE5_SCALES, self.data, subset=subset))
            rows.append({"evaluation": f"Table 5 {method}", "test_scales": ";".join(map(str, TABLE5_SCALES)),
                         "test_scales_px": ";".join(str(self.preset.px(q)) for q in TABLE5_SCALES),
                         "images": len(self.data.val) if subset is None else len(subset),
                         "ours_top1_err": round(100 * e1, 2), "ours_top5_err": round(100 * e5, 2)})
        return rows

    def fused_posteriors(self, models: str, method: str, multi_crop_subset: bool = True):
        """Fusion (Table 6 notation 'D/256-512/256;384;512 + E/...'): the mean of the members' posteriors."""
        posts = [self.posteriors(net, method, qs, multi_crop_subset) for net, qs in members(models)]
        return fuse([p for p, _ in posts]), posts[0][1]

    def row_posteriors(self, table: str, row):
        """The cached posteriors behind one row of Tables 3-6: (posteriors, labels)."""
        from .findings import row_nets
        if table == "table6":
            return self.fused_posteriors(row.models, row.method)
        (net, scales), = row_nets(table, row)
        return self.posteriors(net, row.method, scales, multi_crop_subset=table == "table5")

    def conv5_map(self, q_paper: int) -> str:
        """Side x side of the conv5 feature map at test scale Q (paper pixels) in this preset."""
        side = feature_size(self.preset.px(q_paper), 4)
        return f"{side}x{side}"

    @staticmethod
    def errors(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        return topk_error(p, y, 1), topk_error(p, y, 5)

    def out(self, kind: str, name: str) -> Path:
        base = self.args.results if kind == "results" else self.args.figures
        folder = Path(base) / self.preset.name
        return (folder / f"seed{self.args.seed}" if getattr(self.args, "per_seed", False) else folder) / name

    def provenance(self) -> dict:
        p = self.preset
        return {"preset": p.name, "dataset": self.root.name, "crop_px": p.crop, "width": p.width,
                "epochs_scratch/from_A/finetune": f"{p.scratch_epochs}/{p.from_a_epochs}/{p.finetune_epochs}"
                + (f" (at most; every stage stops after {p.stop_after_drops} lr drops)"
                   if p.stop_after_drops is not None else ""),
                "seed": self.args.seed, "val_images": len(self.data.val)}

    def provenance_multi_crop(self) -> dict:
        """Provenance of Tables 5-6, which run on the multi-crop subset of the val images."""
        subset = self.multi_crop_subset
        return {**self.provenance(), "val_images": len(self.data.val) if subset is None else len(subset)}


def schedule_taken(ckpt: dict) -> dict:
    """How a training checkpoint was trained: epochs, lr drops taken and the last lr (from its log)."""
    lrs = [r["lr"] for r in ckpt["log"]]
    return {"epochs": ckpt["epoch"], "lr_drops": drops_taken(lrs), "last_lr": lrs[-1]}


def dense_tested_scales() -> dict[str, set[int]]:
    """net -> the Q (paper pixels) Tables 3 and 4 evaluate it at with dense evaluation."""
    out: dict[str, set[int]] = {}
    for r in paper_table("table3_single_scale").itertuples():
        out.setdefault(net_name(r.config, r.train_scale), set()).add(int(r.test_scale))
    for r in paper_table("table4_multi_scale").itertuples():
        out.setdefault(net_name(r.config, r.train_scale), set()).update(scales_of(r.test_scales))
    return out
