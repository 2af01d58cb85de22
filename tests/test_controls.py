"""Issue 30's controls: the A-LRN0 net (LRN without its sum term), the LRN divisor measurement, and
the dense-penalty decomposition's arms, each against an independent computation."""

import torch
from conftest import ROOT, load_script
from torch import nn

from vgg.configs import CONFIGS, CONTROLS, LRN_PARAMS
from vgg.evaluate import dense_eval
from vgg.model import VGG


def study(name):
    return load_script(f"experiments/studies/{name}.py")


def test_a_lrn0_divides_conv1_by_k_to_the_beta_and_is_not_a_table1_config():
    assert "A-LRN0" in CONTROLS and "A-LRN0" not in CONFIGS  # Tables 1-2 list the paper's nets only
    torch.manual_seed(0)
    net, lrn = VGG("A-LRN0", 10, 0.25, 64).eval(), VGG("A-LRN", 10, 0.25, 64).eval()
    assert list(net.state_dict()) == list(lrn.state_dict())  # same layout: weights move between them
    x = torch.randn(2, 3, 64, 64) * 60
    a = net.features[:2](x).clone()
    assert torch.allclose(net.features[:3](x), a / 2 ** 0.75, rtol=1e-6)
    lrn.load_state_dict(net.state_dict())
    assert not torch.allclose(lrn.features[:3](x), a / 2 ** 0.75, rtol=1e-3)  # the sum term acts at this scale


def test_lrn_divisor_ratio_matches_torchs_local_response_norm():
    p = LRN_PARAMS
    a = torch.relu(torch.randn(3, 16, 8, 8) * 150)
    torch_lrn = nn.LocalResponseNorm(p["size"], alpha=p["alpha"] * p["size"], beta=p["beta"], k=p["k"])
    expect = (a / torch_lrn(a) / p["k"] ** p["beta"]).permute(0, 2, 3, 1)[a.permute(0, 2, 3, 1) > 0]
    got = study("lrn_control").lrn_divisor_ratio(a)
    assert torch.allclose(got, expect, rtol=1e-5)
    assert got.min() >= 1.0


def test_dense_penalty_arms_agree_at_the_crop_size_and_dense_is_the_tables_dense():
    mod = study("dense_penalty")
    torch.manual_seed(1)
    model = VGG("D", 5, 0.0625, 64).eval()
    x = torch.randn(3, 3, 64, 64)
    arms = mod.arms(model, x, amp=False)
    # at Q = crop the score map is 1x1: one window, the image itself, the centre crop
    for k in ("dense", "windows as crops", "dense, posteriors averaged", "centre position (dense)"):
        assert torch.allclose(arms[k], arms["centre crop"], atol=1e-5), k
    big = torch.randn(3, 3, 128, 128)  # 3x3 score map
    arms = mod.arms(model, big, amp=False)
    assert torch.allclose(arms["dense"], dense_eval(model, big, amp=False), atol=1e-6)
    assert (arms["windows as crops"] - arms["dense"]).abs().max() > 1e-5  # the zero padding differs


def test_c_vs_d_takes_the_dense_penalty_and_the_first_drop_out_of_the_published_gap(tmp_path):
    import shutil

    import pandas as pd
    from conftest import run_cli
    shutil.copytree(ROOT / "results" / "imagenette", tmp_path / "imagenette")
    r = run_cli([str(ROOT / "experiments" / "studies" / "c_vs_d.py"), "--preset", "imagenette",
                 "--results", str(tmp_path)])
    assert r.returncode == 0, r.stderr[-2000:]
    d = pd.read_csv(tmp_path / "imagenette" / "c_vs_d.csv")
    g = pd.read_csv(ROOT / "results" / "imagenette" / "dense_geometry.csv")
    g = g[g.tested_in_tables].set_index(["net", "test_scale"])
    jitter = d[d.stage == "S=256-512"].iloc[0]
    assert jitter.crop_gap_D_minus_C == round(g.loc[("D_S256-512", 384), "center-crop_top1_err"]
                                              - g.loc[("C_S256-512", 384), "center-crop_top1_err"], 2)
    s0 = d[(d.stage == "S=256") & (d.seed == 0)].iloc[0]
    effect = pd.read_csv(ROOT / "results" / "imagenette" / "first_drop_effect.csv")
    slope = effect.slope_points_per_epoch.dropna().iloc[0]
    by_hand = s0.dense_D + slope * (s0.first_drop_C - s0.first_drop_D) - s0.dense_C  # D dropped 8 epochs early
    assert s0.dense_gap_adjusted_for_first_drop == round(by_hand, 2) < s0.dense_gap_D_minus_C
    r = run_cli([str(ROOT / "experiments" / "studies" / "c_vs_d.py"), "--preset", "imagenette",
                 "--results", str(tmp_path / "none")])
    assert r.returncode == 2 and "make dense_geometry" in r.stderr
