"""Table 2: number of parameters per configuration (exact and in millions), plus FLOPs."""
from pathlib import Path

import pandas as pd
import torch
import torchvision

from vgg.configs import CONFIGS, TORCHVISION_NAMES
from vgg.experiment import main
from vgg.model import VGG, count_parameters, multiply_adds
from vgg.plots import table_image
from vgg.protocol import get_preset
from vgg.results import paper_table, write_table


def table2(args) -> None:
    paper = paper_table("table2_params").set_index("config")["params_millions"]
    small_preset = get_preset("proxy" if args.preset == "paper" else args.preset)
    label = f"{small_preset.name}: width {small_preset.width:g}, {small_preset.crop} px, 10 classes"
    rows = []
    for name in CONFIGS:
        with torch.device("meta"):
            net = VGG(name)
            small = VGG(name, num_classes=10, width=small_preset.width, crop_size=small_preset.crop)
            tv = getattr(torchvision.models, TORCHVISION_NAMES[name])() if name in TORCHVISION_NAMES else None
        n = count_parameters(net)
        rows.append({"config": name, "params": n, "params_millions": round(n / 1e6),
                     "paper_params_millions": paper.get(name), "diff_millions": round(n / 1e6) - paper[name]
                     if name in paper else None,
                     "torchvision_params": count_parameters(tv) if tv is not None else None,
                     "GMACs_224": round(multiply_adds(net) / 1e9, 2),
                     "preset_net": label, "preset_net_params": count_parameters(small),
                     "preset_net_MMACs": round(multiply_adds(small) / 1e6, 2)})
    df = pd.DataFrame(rows)
    for col in ("paper_params_millions", "diff_millions", "torchvision_params"):
        df[col] = df[col].astype("Int64")
    write_table(df, Path(args.results) / "table2.csv")
    table_image(df, Path(args.figures) / "table2.png",
                f"Table 2: parameters (1000 classes, 224 px) - ours vs paper; preset net = {label}")


if __name__ == "__main__":
    main(table2, needs_data=False)
