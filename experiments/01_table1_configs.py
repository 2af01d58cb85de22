"""Table 1: the ConvNet configurations, read off the model code (not typed in)."""
from pathlib import Path

import pandas as pd
import torch

from vgg.configs import CONFIGS
from vgg.experiment import main
from vgg.model import VGG, notation, weight_layers
from vgg.plots import table_image
from vgg.results import paper_table, write_table


def table1(args) -> None:
    paper = paper_table("table1_configs").set_index("config")
    rows = []
    for name in CONFIGS:
        with torch.device("meta"):
            net = VGG(name)
        ours = notation(net)
        row = {"config": name, "weight_layers": weight_layers(net), "layers": ours}
        if name in paper.index:
            row.update(paper_weight_layers=int(paper.loc[name, "weight_layers"]),
                       paper_layers=paper.loc[name, "layers"], matches_paper=ours == paper.loc[name, "layers"])
        else:
            row.update(paper_weight_layers=None, paper_layers="(text only: B with each 3x3 pair as one 5x5)",
                       matches_paper=None)
        rows.append(row)
    df = pd.DataFrame(rows)
    df["paper_weight_layers"] = df["paper_weight_layers"].astype("Int64")
    write_table(df, Path(args.results) / "table1.csv")
    table_image(paper_layout(df), Path(args.figures) / "table1.png",
                "Table 1: ConvNet configurations (columns), read off vgg/model.py; "
                "conv<k>-<channels>, each block ends in maxpool")


def paper_layout(df: pd.DataFrame) -> pd.DataFrame:
    """One column per config, layers aligned block by block as in the paper's Table 1."""
    per_config = {r.config: [b.split() for b in r.layers.split(" | ")[:-1] if b != "maxpool"]
                  for r in df.itertuples()}
    rows = [{c: f"{df.set_index('config').loc[c, 'weight_layers']} weight layers" for c in per_config}]
    for b in range(5):
        depth = max(len(blocks[b]) for blocks in per_config.values())
        for i in range(depth):
            rows.append({c: blocks[b][i] if i < len(blocks[b]) else "" for c, blocks in per_config.items()})
        rows.append({c: "maxpool" for c in per_config})
    for fc in ("FC-4096", "FC-4096", "FC-1000", "soft-max"):
        rows.append({c: fc for c in per_config})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main(table1, needs_data=False)
