"""The precision choice: bf16 autocast only where the hardware runs it natively, overridable."""
import pytest
import torch

from vgg.errors import UserError
from vgg.results import device_name
from vgg.runtime import BF16_ISAS, bf16_is_fast, cpu_isa, precision_name, resolve_amp


def test_auto_follows_the_hardware(monkeypatch):
    monkeypatch.delenv("VGG_AMP", raising=False)
    native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert bf16_is_fast("cpu") == native
    assert resolve_amp(None) == native and resolve_amp("auto") == native
    assert precision_name() == ("bf16 autocast" if native else "fp32")


def test_the_device_names_the_instruction_set_that_decides_the_speed():
    isa = cpu_isa()
    assert (isa in BF16_ISAS) == (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    if torch.cpu._is_amx_tile_supported():
        assert isa == "AMX"
    assert isa != "" and f"({isa}, {torch.get_num_threads()} threads)" in device_name()


def test_explicit_choices_win(monkeypatch):
    monkeypatch.setenv("VGG_AMP", "bf16")
    assert resolve_amp(None) is True
    assert resolve_amp(False) is False and resolve_amp("fp32") is False
    monkeypatch.setenv("VGG_AMP", "fp32")
    assert resolve_amp(None) is False and resolve_amp(True) is True and resolve_amp("bf16") is True


def test_bad_setting_names_the_fix(monkeypatch):
    monkeypatch.setenv("VGG_AMP", "fp16")
    with pytest.raises(UserError, match="auto, bf16, fp32"):
        resolve_amp(None)


def test_cli_rejects_unknown_precision(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "vgg", "train", "--config", "A", "--precision", "fp16"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--precision" in r.stderr
