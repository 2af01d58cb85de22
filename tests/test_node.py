"""The chain over a node (vgg.node): the schedule of the graph on device groups, and a real run of
independent nets at the same time on two groups of two gloo processes each."""
import re

import pytest
import torch
from conftest import run_cli

from vgg.chain import CHAIN, checkpoint_path, needed
from vgg.errors import UserError
from vgg.node import Slot, critical_path, device_groups, remaining_paths, simulate

SECONDS = {n.name: {"A": 10, "A-LRN": 11, "B": 12, "B-5x5": 9, "C": 14, "D": 16, "E": 19}[n.config]
           / (1 if n.scale == "256" else 2) for n in CHAIN}


def test_one_group_runs_the_nets_one_after_another_and_enough_groups_take_the_longest_path():
    makespan, schedule = simulate(CHAIN, SECONDS, 1)
    assert makespan == pytest.approx(sum(SECONDS.values()))
    started = {name: start for name, start, _, _ in schedule}
    assert all(started[n.parent] < started[n.name] for n in CHAIN if n.parent)
    longest = max(SECONDS["A_S256"] + SECONDS[f"{c}_S256"] + SECONDS[f"{c}_S384"] + SECONDS[f"{c}_S256-512"]
                  for c in "CDE")  # by hand: A, then one config's three stages
    assert longest == 10 + 19 + 9.5 + 9.5
    assert simulate(CHAIN, SECONDS, 13)[0] == pytest.approx(longest)
    assert critical_path(CHAIN, SECONDS) == ["A_S256", "E_S256", "E_S384", "E_S256-512"]
    assert remaining_paths(CHAIN, SECONDS)["A_S256"] == pytest.approx(longest)
    four = simulate(CHAIN, SECONDS, 4)[0]  # 8 GPUs in groups of 2
    assert longest <= four < sum(SECONDS.values()) / 2


def test_running_nets_count_with_the_time_they_have_left():
    rest = [n for n in CHAIN if n.name not in ("A_S256",)]
    makespan, schedule = simulate(rest, SECONDS, 2, busy={"A_S256": 4.0})
    assert ("A_S256", 0.0, 4.0, 0) in schedule
    assert min(s for name, s, _, _ in schedule if name == "E_S256") >= 4.0


def test_device_groups():
    assert device_groups("0,1,2,3,4,5,6,7", 2) == [Slot(("0", "1"), 2), Slot(("2", "3"), 2), Slot(("4", "5"), 2),
                                                   Slot(("6", "7"), 2)]
    assert device_groups("0,1,2", 2) == [Slot(("0", "1"), 2)]
    assert device_groups("cpu:4", 2) == [Slot((), 2), Slot((), 2)]
    for bad in ("gpu0", "0,1", "cpu:x"):
        with pytest.raises(UserError):
            device_groups(bad, 4 if bad == "0,1" else 2)
    with pytest.raises(UserError, match="1 or more"):
        device_groups("0", 0)


def test_independent_nets_train_at_the_same_time_on_disjoint_groups(small_data, tmp_path):
    """A and A-LRN (independent) on two groups of two gloo processes at once, then B (from A); the
    plan and ETA are printed first; a second run trains nothing."""
    runs = tmp_path / "runs"
    args = ["-m", "vgg", "chain", "--preset", "tiny", "--data", str(small_data), "--runs", str(runs),
            "--only", "B_S256", "A-LRN_S256", "--gpus-per-net", "2", "--devices", "cpu:4", "--batch", "8",
            "--no-amp"]
    r = run_cli(args)
    assert r.returncode == 0, r.stderr + r.stdout
    out = r.stdout
    assert "critical path: A_S256 -> B_S256" in out and "ETA" in out.split("[")[0]
    events = re.findall(r"\] (start|done) (\S+)", out)
    assert events[:2] == [("start", "A-LRN_S256"), ("start", "A_S256")] or \
        events[:2] == [("start", "A_S256"), ("start", "A-LRN_S256")]  # both before either finished
    assert events.index(("start", "B_S256")) > events.index(("done", "A_S256"))
    for name in ("A_S256", "A-LRN_S256", "B_S256"):
        ckpt = torch.load(checkpoint_path(runs, "tiny", name), weights_only=False)
        assert ckpt["complete"] and ckpt["spec"]["world"] == 2, name
    again = run_cli(args)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert [n.name for n in needed(["B_S256"])] == ["A_S256", "B_S256"]
