"""The features' forward as the chain runs it against two slower forms over the same modules, at the
preset's geometry on synthetic tensors, in the precision the chain uses here:

- ``fused``: vgg.model.Features with vgg.fused (conv + ReLU as one oneDNN convolution, max-pool (+ ReLU)
  as one pass; each ReLU that precedes a max-pool applied after it);
- ``relu_after_pool``: the same order, every layer its own module (vgg.fused.unfused);
- ``relu_before_pool``: the plain order ReLU, then max-pool (nn.Sequential's forward).

All three give the same values and gradients; the study checks that bitwise (forward and every
parameter's gradient of one step; dense score maps) and times (1) the training step of each
``--configs`` net and (2) net D's dense evaluation (3 Q x 2 flips) and 150-crop multi-crop evaluation at
Q = 256 / 384 / 512 (paper px), the variants interleaved after warm-up (the order reversed every other
repeat), median of ``--repeats``; and, given ``--data``, (3) whole epochs of the chain's training
(vgg.train: real images, augmentation, logging) of ``--epoch-config`` for ``--epochs`` epochs per run,
one run per variant and then one per variant in reverse order: the median logged epoch seconds of each
variant, and whether every run ends with the same weights. Writes results/<preset>/fused_layers.csv.
"""
import statistics
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torchvision.datasets import ImageFolder

from vgg import evaluate, fused
from vgg.checkpoint import load_metadata
from vgg.data import data_root
from vgg.experiment import comma_list, main
from vgg.init import init_glorot
from vgg.model import VGG, plain_order
from vgg.protocol import get_preset
from vgg.results import write_table
from vgg.runtime import keep_freed_memory, resolve_amp
from vgg.timing import interleaved_rates
from vgg.train import TrainSpec, make_optimizer, train, train_step

VARIANTS = ("fused", "relu_after_pool", "relu_before_pool")


@contextmanager
def variant(name: str):
    """Run every Features forward as the variant ``name`` (VARIANTS) inside the block."""
    with plain_order() if name == "relu_before_pool" else nullcontext(), \
            fused.unfused() if name != "fused" else nullcontext():
        yield


def rates(fns: dict, repeats: int) -> dict:
    """variant -> callable returning images processed; returns variant -> median img/s, the variants
    in order and reversed on alternate repeats (A B C C B A A B C ...) after one warm-up call each."""
    return interleaved_rates({name: fns[name] for name in VARIANTS}, repeats, context=variant)


def same_step(model: VGG, x: torch.Tensor, y: torch.Tensor, amp: bool) -> bool:
    """Logits and every parameter gradient of one loss bitwise equal under every variant (eval mode:
    no dropout, so every pass sees the same net)."""
    model.eval()
    results = []
    for name in VARIANTS:
        model.zero_grad(set_to_none=True)
        with variant(name), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        nn.functional.cross_entropy(logits.float(), y).backward()
        results.append([logits.detach()] + [p.grad.clone() for p in model.parameters()])
    model.train()
    return all(torch.equal(a, b) for other in results[1:] for a, b in zip(results[0], other))


def epoch_rows(args, preset) -> list[dict]:
    """Whole training epochs under each variant (see the module docstring): one row, img/s = the training
    images / the median logged epoch seconds of each variant (the first epoch of each run not counted)."""
    images = len(ImageFolder(str(data_root(args.data) / "train")))
    seconds, states = {name: [] for name in VARIANTS}, []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(VARIANTS + VARIANTS[::-1]):
            spec = TrainSpec(args.epoch_config, preset=preset.name, data=args.data, out=f"{tmp}/run{i}.pt",
                             runs=args.runs, epochs=args.epochs, progress=False)
            with variant(name):
                out = train(spec)
            seconds[name] += pd.read_csv(out.with_suffix(".log.csv"))["seconds"].iloc[1:].tolist()
            states.append(torch.load(out, map_location="cpu", weights_only=False)["state_dict"])
            trained = images - load_metadata(out)["skipped_images"]  # the loader leaves unreadable files out
    same = all(torch.equal(states[0][k], s[k]) for s in states[1:] for k in states[0])
    return [{"config": args.epoch_config,
             "phase": f"training epoch, real images ({args.epochs} epochs x 2 runs per variant, first epoch untimed)",
             **{name: trained / statistics.median(v) for name, v in seconds.items()}, "bitwise_equal": same}]


def fused_layers(args) -> None:
    keep_freed_memory()  # as the chain runs
    amp = resolve_amp(None, "cpu")
    preset = get_preset(args.preset)
    torch.manual_seed(0)
    x = torch.randn(preset.batch, 3, preset.crop, preset.crop).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (preset.batch,))
    rows = []
    for config in args.configs:
        model = init_glorot(VGG(config, num_classes=10, width=preset.width, crop_size=preset.crop))
        model.train().to(memory_format=torch.channels_last)
        opt = make_optimizer(model, preset, 0.01)
        equal = same_step(model, x, y, amp)

        def step():
            for _ in range(args.steps):
                train_step(model, opt, x, y, amp)
            return args.steps * preset.batch

        r = rates({name: step for name in VARIANTS}, args.repeats)
        rows.append({"config": config, "phase": f"train step (batch {preset.batch}, crop {preset.crop})",
                     **r, "bitwise_equal": equal})
        if config != "D":
            continue
        model.eval()
        imgs = [torch.randn(args.images, 3, preset.px(q), preset.px(q)) for q in (256, 384, 512)]
        maps = {}
        for name in VARIANTS:
            with variant(name), torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                maps[name] = model.score_map(imgs[-1])
        for phase, method in (("dense eval (3 Q x 2 flips)", evaluate.dense_eval),
                              ("multi-crop eval (150 crops over 3 Q)", evaluate.multi_crop)):
            def run(method=method):
                for im in imgs:
                    method(model, im, amp)
                return args.images

            rows.append({"config": config, "phase": phase, **rates({name: run for name in VARIANTS}, args.repeats),
                         "bitwise_equal": all(torch.equal(maps["fused"], m) for m in maps.values())})
    if args.data:
        rows += epoch_rows(args, preset)
    df = pd.DataFrame(rows)
    df["fused_vs_before"] = (df.fused / df.relu_before_pool).round(3)  # this code against the plain modules
    df["fused_vs_after"] = (df.fused / df.relu_after_pool).round(3)  # what the fusion adds
    df["after_vs_before"] = (df.relu_after_pool / df.relu_before_pool).round(3)  # what the order adds
    for name in VARIANTS:  # four significant digits: a slow variant's ratio stays checkable from its rate
        df[name] = df[name].map(lambda v: float(f"{v:.4g}"))
    df = df.rename(columns={name: f"{name}_img_s" for name in VARIANTS})
    write_table(df, Path(args.results) / preset.name / "fused_layers.csv",
                {"preset": preset.name, "repeats_median_of": args.repeats})


def extra(p) -> None:
    p.add_argument("--configs", type=comma_list(), default="A,A-LRN,D,E",
                   help="nets whose training step is timed (default A,A-LRN,D,E; D also times evaluation)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per variant (default 5)")
    p.add_argument("--steps", type=int, default=4, help="training steps per repeat (default 4)")
    p.add_argument("--images", type=int, default=4, help="images per Q in the evaluation phases (default 4)")
    p.add_argument("--data", help="dataset root: also time whole training epochs on it (default: no epoch phase)")
    p.add_argument("--runs", default="runs", help="runs folder whose cache/ holds the decoded data (default runs)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per training run (default 3; needs --data)")
    p.add_argument("--epoch-config", default="E", help="net trained in the epoch phase (default E)")


if __name__ == "__main__":
    main(fused_layers, needs_data=False, extra=extra)
