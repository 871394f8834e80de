"""Accelerator and precision from the hardware: every branch of ``precision: auto`` with the
capabilities faked, explicit choices honoured (with a warning where they would be slow), and the
real CPU's answer under oneDNN's ISA cap."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inpaint import hardware
from inpaint.hardware import Capabilities, capabilities, onednn_allows_bf16, resolve_accelerator, resolve_precision

ROOT = Path(__file__).resolve().parents[1]

A100 = Capabilities("cuda", "NVIDIA A100", native_bf16=True, cpu_isa="AVX512", cuda_capability="8.0")
T4 = Capabilities("cuda", "Tesla T4", native_bf16=False, cpu_isa="AVX2", cuda_capability="7.5")
SAPPHIRE_RAPIDS = Capabilities("cpu", "Xeon", native_bf16=True, cpu_isa="AVX512", cpu_flags=("avx512_bf16", "amx_bf16"))
ZEN3 = Capabilities("cpu", "AMD EPYC 7B13", native_bf16=False, cpu_isa="AVX2")
CAPPED = Capabilities("cpu", "AMD EPYC", native_bf16=False, cpu_isa="AVX2", cpu_flags=("avx512_bf16",), onednn_max_isa="AVX2")


@pytest.mark.parametrize(
    "caps, precision, says",
    [
        (A100, "bf16-mixed", "has bf16"),
        (T4, "16-mixed", "has no bf16"),
        (SAPPHIRE_RAPIDS, "bf16-mixed", "native bf16 (avx512_bf16, amx_bf16)"),
        (ZEN3, "32-true", "has no native bf16"),
        (CAPPED, "32-true", "ONEDNN_MAX_CPU_ISA=AVX2"),
        (Capabilities("mps", "Apple MPS", native_bf16=False, cpu_isa="NO AVX"), "32-true", "float32"),
    ],
)
def test_auto_precision_follows_the_device(caps, precision, says):
    choice = resolve_precision("auto", caps)
    assert choice.precision == precision and says in choice.reason and choice.warning is None
    assert caps.name in choice.reason  # the log line names the device


@pytest.mark.parametrize("requested", ["bf16-mixed", "16-mixed", "bf16-true"])
def test_explicit_16_bit_on_a_cpu_that_emulates_bf16_is_kept_with_one_warning(requested):
    choice = resolve_precision(requested, ZEN3)
    assert choice.precision == requested
    assert "emulates" in choice.warning and "32-true" in choice.warning and "\n" not in choice.warning


@pytest.mark.parametrize("caps, requested", [(SAPPHIRE_RAPIDS, "bf16-mixed"), (ZEN3, "32-true"), (T4, "bf16-mixed"), (A100, 32)])
def test_explicit_precision_is_honoured_silently_where_it_is_not_emulated(caps, requested):
    choice = resolve_precision(requested, caps)
    assert choice.precision == requested and choice.warning is None


@pytest.mark.parametrize(
    "cap, allows",
    [(None, True), ("ALL", True), ("AVX512_CORE_BF16", True), ("avx512_core_amx", True), ("AVX512_CORE", False),
     ("AVX2", False), ("SSE41", False), ("NOT_AN_ISA", True)],
)
def test_onednn_cap_decides_whether_the_cpu_bf16_may_be_used(cap, allows):
    assert onednn_allows_bf16(cap) is allows


def test_cpu_capabilities_read_the_flags_and_the_cap(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert capabilities("cpu").native_bf16
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    caps = capabilities("cpu")
    assert not caps.native_bf16 and caps.onednn_max_isa == "AVX2" and caps.cpu_flags == ("avx512_bf16",)
    monkeypatch.setattr(hardware, "cpu_bf16_flags", lambda: ())
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert not capabilities("cpu").native_bf16
    assert json.dumps(caps.as_dict())  # JSON-ready for the benchmarks and the loggers


def test_the_cap_reaches_onednn_as_torch_reports_it():
    """In a fresh process with ONEDNN_MAX_CPU_ISA=AVX2, our answer and oneDNN's own bf16 check agree
    (False): the switch is how the no-bf16 mode of a bf16 CPU is had."""
    code = "import torch; from inpaint.hardware import capabilities; print(capabilities().native_bf16, torch.ops.mkldnn._is_mkldnn_bf16_supported())"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_auto_accelerator_is_cuda_only_when_torch_sees_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_accelerator("auto") == "cuda" and resolve_accelerator("gpu") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_accelerator("auto") == "cpu"  # never MPS: the analyses need float64
    assert resolve_accelerator("cpu") == "cpu" and resolve_accelerator("mps") == "mps"


def test_the_real_machine_resolves_to_a_precision_lightning_runs():
    caps = capabilities(resolve_accelerator("auto"))
    choice = resolve_precision("auto", caps)
    expected = {(True, "cuda"): "bf16-mixed", (False, "cuda"): "16-mixed", (True, "cpu"): "bf16-mixed", (False, "cpu"): "32-true"}
    assert choice.precision == expected[(caps.native_bf16, caps.device)]
    assert hardware.autocast_dtype(choice.precision) in (torch.bfloat16, torch.float16, torch.float32)


@pytest.mark.parametrize("device, says", [("cuda:3", "torch sees 0 CUDA"), ("mps", "they need float64"), ("tpu", "not a device name")])
def test_analyze_refuses_a_device_it_cannot_use(device, says, monkeypatch):
    from analyze import resolve_device
    from inpaint.errors import InpaintError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(InpaintError, match=says):
        resolve_device(device)
