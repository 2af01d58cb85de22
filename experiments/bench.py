"""Benchmarks, each a pair timed interleaved (A B A B ...) after warm-up, median of REPEATS.

1. Training step of D at the proxy geometry: our loop (uint8 in memory, batched tensor
   augmentation, bf16 autocast, channels_last) vs a torchvision-reference-style loop
   (fp32, PIL transforms + DataLoader with 2 workers) on the same images.
2. Loader headroom: our full loop vs the bare model step on synthetic tensors (goal >= 90%),
   and our data pipeline alone.
3. Evaluation: dense (3 Q x 2 flips) vs 150-crop multi-crop per image, net D.
4. Paper geometry (D, width 1, 224 px): training step fp32 vs bf16.
"""
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torchvision.transforms as T  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision.datasets import ImageFolder  # noqa: E402

from vgg.data import data_root  # noqa: E402
from vgg.datasets import MemoryData  # noqa: E402
from vgg.evaluate import dense_eval, multi_crop  # noqa: E402
from vgg.experiment import main  # noqa: E402
from vgg.init import init_glorot  # noqa: E402
from vgg.model import VGG  # noqa: E402
from vgg.protocol import get_preset  # noqa: E402
from vgg.results import write_table  # noqa: E402
from vgg.train import make_optimizer, train_step  # noqa: E402

REPEATS = 5
STEPS = 8


def interleaved(fns: dict, repeats: int = REPEATS) -> dict:
    """fns: name -> callable returning images processed; returns name -> median img/s."""
    for f in fns.values():  # warm-up
        f()
    rates = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            n = f()
            rates[k].append(n / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in rates.items()}


def proxy_rows(args, preset) -> list[dict]:
    root = data_root(args.data)
    data = MemoryData(root, preset, cache_dir=Path("runs/cache"))
    smin, smax = preset.scale_px("256")
    torch.manual_seed(0)
    ours = init_glorot(VGG("D", num_classes=10, width=preset.width, crop_size=preset.crop))
    ours.to(memory_format=torch.channels_last).train()
    ref = init_glorot(VGG("D", num_classes=10, width=preset.width, crop_size=preset.crop)).train()
    opt_ours, opt_ref = make_optimizer(ours, preset, 0.01), make_optimizer(ref, preset, 0.01)
    gen = torch.Generator().manual_seed(0)
    it = {}

    def ours_batches():
        while True:
            yield from data.train_batches(0, 0, (smin, smax), gen)

    it["ours"] = ours_batches()

    def ours_loop():
        for _ in range(STEPS):
            x, y = next(it["ours"])
            x = data.colour_augment(x, gen).contiguous(memory_format=torch.channels_last)
            train_step(ours, opt_ours, x, y, amp=True)
        return STEPS * preset.batch

    mean = data.colour.mean.tolist()
    tf = T.Compose([T.Resize(smin), T.RandomCrop(preset.crop), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(mean, [1 / 255] * 3)])
    loader = DataLoader(ImageFolder(str(root / "train"), tf), batch_size=preset.batch, shuffle=True,
                        num_workers=2, persistent_workers=True, drop_last=True)

    def ref_batches():
        while True:
            yield from loader

    it["ref"] = ref_batches()

    def ref_loop():
        for _ in range(STEPS):
            x, y = next(it["ref"])
            train_step(ref, opt_ref, x, y, amp=False)
        return STEPS * preset.batch

    xs = torch.randn(preset.batch, 3, preset.crop, preset.crop).contiguous(memory_format=torch.channels_last)
    ys = torch.randint(0, 10, (preset.batch,))

    def bare_step():
        for _ in range(STEPS):
            train_step(ours, opt_ours, xs, ys, amp=True)
        return STEPS * preset.batch

    def pipeline_only():
        for _ in range(STEPS):
            x, _ = next(it["ours"])
            data.colour_augment(x, gen)
        return STEPS * preset.batch

    r1 = interleaved({"ours": ours_loop, "ref": ref_loop})
    r2 = interleaved({"full": ours_loop, "bare": bare_step, "pipeline": pipeline_only})

    net = ours.eval()
    qs = [preset.px(q) for q in (256, 384, 512)]
    imgs = {q: torch.randn(32, 3, q, q) for q in qs}
    r3 = interleaved({"dense": lambda: [dense_eval(net, imgs[q]) for q in qs] and 32,
                      "multi-crop": lambda: [multi_crop(net, imgs[q]) for q in qs] and 32})
    return [
        {"what": "1. train step D, proxy (ours: memory+batched aug+bf16+channels_last vs "
                 "reference: PIL+DataLoader(2 workers)+fp32)", "ours_img_s": r1["ours"], "baseline_img_s": r1["ref"]},
        {"what": "2a. loader headroom: our full loop vs bare model step (synthetic tensors)",
         "ours_img_s": r2["full"], "baseline_img_s": r2["bare"]},
        {"what": "2b. our data pipeline alone (crop+flip+colour) vs bare model step",
         "ours_img_s": r2["pipeline"], "baseline_img_s": r2["bare"]},
        {"what": "3. eval D proxy: dense (3 Q x 2 flips) vs multi-crop (150 crops), images/s",
         "ours_img_s": r3["dense"], "baseline_img_s": r3["multi-crop"]},
    ]


def paper_row() -> dict:
    torch.manual_seed(0)
    net = VGG("D").train().to(memory_format=torch.channels_last)
    opt = make_optimizer(net, get_preset("paper"), 0.01)
    x = torch.randn(8, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (8,))

    def step(amp):
        return lambda: (train_step(net, opt, x, y, amp=amp), 8)[1]

    r = interleaved({"bf16": step(True), "fp32": step(False)})
    return {"what": "4. train step D, paper geometry (width 1, 224 px, batch 8): bf16 vs fp32",
            "ours_img_s": r["bf16"], "baseline_img_s": r["fp32"]}


def bench(args) -> None:
    preset = get_preset(args.preset)
    rows = proxy_rows(args, preset) + [paper_row()]
    df = pd.DataFrame(rows)
    df["ratio"] = (df.ours_img_s / df.baseline_img_s).round(3)
    df["ours_img_s"] = df.ours_img_s.round(1)
    df["baseline_img_s"] = df.baseline_img_s.round(1)
    df["device"] = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    df["torch"] = torch.__version__
    df["date"] = datetime.date.today().isoformat()
    write_table(df, Path(args.results) / "bench.csv", {"preset": preset.name, "repeats_median_of": REPEATS})
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vgg.plots import save_figure
    fig, ax = plt.subplots(figsize=(9, 4))
    labels = [w.split(":")[0].split(" (")[0] for w in df.what]
    ax.barh(labels, df.ratio, color="#d9822b")
    ax.axvline(1, color="k", lw=0.8)
    for i, v in enumerate(df.ratio):
        ax.text(v, i, f" {v:.2f}x", va="center", fontsize=8)
    ax.set_xlabel("ratio ours / baseline (img/s)")
    ax.invert_yaxis()
    ax.set_title("Benchmarks (see results/bench.csv for what each pair is)", fontsize=10)
    save_figure(fig, Path(args.figures) / "bench.png")


if __name__ == "__main__":
    main(bench)
