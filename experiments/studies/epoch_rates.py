"""Real training epochs of every config of the chain's S=256 stage on this machine, a few per config:
the rates that `make reproduce_time` turns into the reproduction's wall time before it runs.

Each config trains ``--epochs`` epochs (default 3) from the preset's random init with the chain's own
training (vgg.train: the preset's data, loader, augmentation, precision and batch; the compiled layers
compile in the first epoch), and its epoch log (``<config>_S256.log.csv``: seconds per epoch) is kept in
results/<preset>/epoch_rates/<label>/ with a line per config in rates.csv (its device column names the
CPU). Init and lr do not change an epoch's work, so the rates hold for the chain's nets initialised from
net A and for fine-tuning stages of the same config at the same crop. ``<config>-fc`` (default: the
plan's FC-only control, D-fc) trains that config with its conv layers frozen, as that control does: no
conv backward, so a cheaper epoch.
"""
import statistics
import tempfile
from pathlib import Path

import pandas as pd

from vgg.chain import CONTROLS, S256_CONFIGS
from vgg.chain_time import FC_ONLY, rate_key
from vgg.configs import check_config
from vgg.experiment import comma_list, main
from vgg.io import atomic_write_text
from vgg.protocol import get_preset
from vgg.results import matmul_gflops, write_table
from vgg.train import TrainSpec, train


def epoch_rates(args) -> None:
    preset = get_preset(args.preset)
    configs = [check_config(c.removesuffix(FC_ONLY)) + FC_ONLY * c.endswith(FC_ONLY)
               for c in args.configs]  # a typo stops before any training
    folder = Path(args.results) / preset.name / "epoch_rates" / args.label
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            spec = TrainSpec(config.removesuffix(FC_ONLY), preset=preset.name, data=args.data,
                             out=f"{tmp}/{config}_S256.pt", runs=args.runs, epochs=args.epochs, progress=False,
                             train_layers="fc" if config.endswith(FC_ONLY) else "all")
            log = train(spec).with_suffix(".log.csv")
            atomic_write_text(folder / log.name, log.read_text())
            seconds = pd.read_csv(log)["seconds"].tolist()
            rows.append({"config": config, "epochs": len(seconds), "median_epoch_s": statistics.median(seconds),
                         "first_epoch_s": seconds[0], "log": str(folder / log.name)})
    write_table(pd.DataFrame(rows), folder / "rates.csv",
                {"preset": preset.name, "bf16_matmul_gflop_s": round(matmul_gflops("cpu"))})  # device: the CPU


#: what `make epoch_rates` times by default: the chain's S=256 stage and the plan's FC-only control
DEFAULT_CONFIGS = S256_CONFIGS + [rate_key(n) for n in CONTROLS if n.train_layers == "fc"]


def extra(p) -> None:
    p.add_argument("--configs", type=comma_list(), default=",".join(DEFAULT_CONFIGS),
                   help=f"configs to time, <config>-fc with frozen conv layers (default: {','.join(DEFAULT_CONFIGS)})")
    p.add_argument("--epochs", type=int, default=3, help="epochs per config (default 3)")
    p.add_argument("--label", required=True, help="folder under results/<preset>/epoch_rates/ (e.g. the date and CPU)")


if __name__ == "__main__":
    main(epoch_rates, extra=extra)
