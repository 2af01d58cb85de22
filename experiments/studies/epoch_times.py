"""Measured training speed of every config at the preset's geometry on this machine, and the
time the preset's whole Table 3 chain needs (epochs per stage x measured epoch time)."""
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from vgg.chain import CHAIN
from vgg.chain_time import chain_seconds
from vgg.configs import CONFIGS
from vgg.experiment import main
from vgg.init import init_glorot
from vgg.model import VGG
from vgg.protocol import get_preset
from vgg.results import write_table
from vgg.train import make_optimizer, train_step

TRAIN_IMAGES = 50_000  # CIFAR-10's training set
STEPS = 12


def epoch_times(args) -> None:
    preset = get_preset(args.preset)
    rows = []
    for config in CONFIGS:
        torch.manual_seed(0)
        model = init_glorot(VGG(config, num_classes=10, width=preset.width, crop_size=preset.crop))
        model.to(memory_format=torch.channels_last).train()
        opt = make_optimizer(model, preset, preset.lr)
        x = torch.randn(preset.batch, 3, preset.crop, preset.crop).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (preset.batch,))
        for _ in range(3):
            train_step(model, opt, x, y)
        t0 = time.perf_counter()
        for _ in range(STEPS):
            train_step(model, opt, x, y)
        ips = STEPS * preset.batch / (time.perf_counter() - t0)
        rows.append({"config": config, "model_step_img_per_s": round(ips), "epoch_s": round(TRAIN_IMAGES / ips, 1)})
    df = pd.DataFrame(rows)
    per_epoch = dict(zip(df.config, df.epoch_s))
    total = chain_seconds([(n, 0) for n in CHAIN], preset, per_epoch)
    df["chain_nets"] = ";".join(n.name for n in CHAIN)
    df["chain_total_min"] = round(total / 60, 1)
    write_table(df, Path(args.results) / preset.name / "epoch_times.csv",
                {"preset": preset.name, "batch": preset.batch, "layout": "channels_last",
                 "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                 "torch": torch.__version__, "note": "model step on tensors (fwd+bwd+SGD), epoch = 50,000 images"})


if __name__ == "__main__":
    main(epoch_times, needs_data=False)
