"""Table 1: the ConvNet configurations, read off the model code (not typed in)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from vgg.configs import CONFIGS  # noqa: E402
from vgg.experiment import arguments  # noqa: E402
from vgg.model import VGG, notation, weight_layers  # noqa: E402
from vgg.plots import table_image  # noqa: E402
from vgg.results import paper_table, write_table  # noqa: E402


def main() -> None:
    args = arguments(__doc__, needs_data=False)
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
    table_image(df[["config", "weight_layers", "layers"]], Path(args.figures) / "table1.png",
                "Table 1: ConvNet configurations (generated from vgg/model.py)", col_widths=[0.06, 0.08, 0.86])


if __name__ == "__main__":
    main()
