"""vgg.wall_time: the rows `make reproduce` appends, kept across invocations."""
import pandas as pd

from vgg.wall_time import EVERY, OVER_SEEDS, TABLES, TOTAL, WallTime, is_net, read_wall_time


def test_rows_are_appended_atomically_and_a_later_invocation_counts_the_earlier_ones(tmp_path):
    first = WallTime(tmp_path, "tiny")
    assert first.earlier == 0.0 and first.rows.empty
    first.record(0, "A_S256", 12.34, epochs=3)
    first.record(0, TABLES, 5.0)
    t = read_wall_time(tmp_path / "tiny" / "wall_time.csv")
    assert list(t.step) == ["A_S256", TABLES] and list(t.seed) == ["0", "0"]
    assert list(t.wall_seconds) == [12.3, 5.0] and list(t.epochs) == [3, 0]
    assert t.cpu.notna().all() and t.code.notna().all()
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["wall_time.csv"]  # no temp file left

    second = WallTime(tmp_path, "tiny")
    second.invocation = "later"
    assert second.earlier == 17.3 and second.elapsed() >= 17.3
    second.record("0;1;2", OVER_SEEDS, 1.0)
    t = read_wall_time(second.path)
    assert list(t.seed) == ["0", "0", "0;1;2"] and list(t.invocation.iloc[2:]) == ["later"]
    assert t.invocation.nunique() == 2


def test_a_code_commit_that_looks_like_a_number_is_read_as_written(tmp_path):
    """A run made at commit 3589917 (all digits) or 0e53793 keeps it as text, as wall_time_check joins it."""
    pd.DataFrame({"seed": ["0", "0"], "step": ["A_S256", "B_S256"], "code": ["3589917", "0e53793"],
                  "commit": ["3589917", "0e53793"]}).to_csv(tmp_path / "wall_time.csv", index=False)
    w = read_wall_time(tmp_path / "wall_time.csv")
    assert list(w.code) == list(w.commit) == ["3589917", "0e53793"]


def test_is_net_tells_nets_from_scoring_steps_and_check_totals():
    steps = pd.Series(["A_S256", TABLES, "E_S256-512", OVER_SEEDS, TOTAL, EVERY])
    assert list(is_net(steps)) == [True, False, True, False, False, False]
