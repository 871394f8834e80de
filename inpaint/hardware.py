"""What the machine can do, and the accelerator and precision the project picks for it.

Precision depends on the hardware more than on anything else: bf16 autocast doubles the speed of
a CPU with native bf16 (AVX-512 BF16 or AMX) but is many times slower than float32 on one without
(oneDNN then emulates it: 17x at the demo's width on AVX2). So ``precision: auto``, the default of
every trainer config, resolves here once, before the Trainer is built, and says why:

- a CUDA GPU with bf16 (Ampere and later) -> ``bf16-mixed``
- a CUDA GPU without (V100, T4, ...)      -> ``16-mixed`` (fp16 with loss scaling)
- a CPU with native bf16                  -> ``bf16-mixed``
- any other CPU (and Apple's MPS)         -> ``32-true``

A CPU's bf16 is native when its flags say AVX-512 BF16 or AMX *and* oneDNN may use them: the
environment switch ``ONEDNN_MAX_CPU_ISA`` (e.g. ``AVX2``) caps the instructions oneDNN uses, which
is how a machine with native bf16 is made to behave like one without.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass

import torch

# oneDNN's ISA names in increasing order (ONEDNN_MAX_CPU_ISA); native bf16 needs AVX512_CORE_BF16 or later.
ONEDNN_ISAS = (
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI", "AVX512_CORE_BF16",
    "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16",
    "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2",
)
NATIVE_BF16_ISA = "AVX512_CORE_BF16"


@dataclass(frozen=True)
class Capabilities:
    """One device's facts that decide precision (JSON-ready through :meth:`as_dict`).

    Args:
        device: ``cpu``, ``cuda`` or ``mps``.
        name: the CPU's model name or the GPU's.
        native_bf16: bf16 arithmetic runs in hardware (CPU: AVX-512 BF16 or AMX usable by oneDNN;
            CUDA: compute capability 8.0 or later).
        cpu_isa: ATen's vector level (``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512, ...).
        cpu_flags: the bf16-related flags the CPU reports (avx512_bf16, amx_bf16).
        onednn_max_isa: ``ONEDNN_MAX_CPU_ISA`` if set (None: oneDNN uses all the CPU has).
        cuda_capability: the GPU's compute capability, e.g. ``"8.0"``.
    """

    device: str
    name: str
    native_bf16: bool
    cpu_isa: str
    cpu_flags: tuple[str, ...] = ()
    onednn_max_isa: str | None = None
    cuda_capability: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def cpu_bf16_flags() -> tuple[str, ...]:
    """The bf16 instructions the CPU itself has (before any oneDNN cap), as torch's cpuinfo sees them."""
    flags = []
    if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        flags.append("avx512_bf16")
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        flags.append("amx_bf16")
    return tuple(flags)


def onednn_allows_bf16(cap: str | None) -> bool:
    """Whether oneDNN, capped at ``cap`` (``ONEDNN_MAX_CPU_ISA``; None or ALL: no cap), may use the
    CPU's bf16 instructions. ALL, DEFAULT or an unknown name is taken as no cap, as oneDNN takes it."""
    if cap is None or cap.upper() not in ONEDNN_ISAS:
        return True
    return ONEDNN_ISAS.index(cap.upper()) >= ONEDNN_ISAS.index(NATIVE_BF16_ISA)


def onednn_cap() -> str | None:
    return os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")


def cpu_capabilities() -> Capabilities:
    flags, cap = cpu_bf16_flags(), onednn_cap()
    return Capabilities(
        device="cpu",
        name=cpu_name(),
        native_bf16=bool(flags) and onednn_allows_bf16(cap),
        cpu_isa=torch.backends.cpu.get_cpu_capability(),
        cpu_flags=flags,
        onednn_max_isa=cap,
    )


def capabilities(device: str | torch.device = "cpu") -> Capabilities:
    """The :class:`Capabilities` of ``device`` (``cpu``, ``cuda``, ``cuda:N`` or ``mps``)."""
    device = torch.device(device)
    cpu = cpu_capabilities()
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return Capabilities(
            device="cuda",
            name=torch.cuda.get_device_name(device),
            native_bf16=major >= 8,
            cpu_isa=cpu.cpu_isa,
            cpu_flags=cpu.cpu_flags,
            onednn_max_isa=cpu.onednn_max_isa,
            cuda_capability=f"{major}.{minor}",
        )
    if device.type == "mps":
        return Capabilities(device="mps", name="Apple MPS", native_bf16=False, cpu_isa=cpu.cpu_isa)
    return cpu


def resolve_accelerator(accelerator: str) -> str:
    """Lightning's accelerator name for a run: ``auto`` -> ``cuda`` when torch sees a CUDA GPU, else
    ``cpu`` (never MPS: the analyses need float64, which MPS lacks; ask for ``mps`` explicitly);
    ``gpu`` -> ``cuda`` where CUDA is there, ``mps`` on Apple's; any other name is kept."""
    accelerator = str(accelerator)
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "gpu":
        return "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "gpu")
    return accelerator


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``trainer.precision`` becomes, why, and a warning when an explicit choice will be slow."""

    precision: str | int
    reason: str
    warning: str | None = None


def _device_phrase(caps: Capabilities) -> str:
    if caps.device == "cuda":
        return f"CUDA GPU {caps.name} (compute capability {caps.cuda_capability})"
    if caps.device == "mps":
        return "Apple MPS"
    capped = f", oneDNN capped at {caps.onednn_max_isa}" if caps.onednn_max_isa else ""
    return f"CPU {caps.name} ({caps.cpu_isa}{capped})"


def resolve_precision(requested: str | int, caps: Capabilities) -> PrecisionChoice:
    """``auto`` -> the precision for ``caps`` (the table in this module's docstring), with the reason;
    an explicit precision is kept as given, with a warning when it asks bf16 of a CPU that would emulate it."""
    where = _device_phrase(caps)
    if str(requested) != "auto":
        warning = None
        if caps.device == "cpu" and "16" in str(requested) and not caps.native_bf16:  # Lightning runs 16-bit on CPUs as bf16
            warning = (
                f"trainer.precision={requested} on a CPU without native bf16 ({where}): 16-bit runs as bf16 on CPUs, "
                f"which oneDNN emulates here, many times slower than float32. Use trainer.precision=32-true (or auto)."
            )
        return PrecisionChoice(requested, f"trainer.precision={requested} as set", warning)
    if caps.device == "cuda":
        precision, why = ("bf16-mixed", "has bf16") if caps.native_bf16 else ("16-mixed", "has no bf16 (before compute capability 8.0)")
    elif caps.device == "cpu":
        precision = "bf16-mixed" if caps.native_bf16 else "32-true"
        if caps.native_bf16:
            why = f"has native bf16 ({', '.join(caps.cpu_flags)})"
        elif caps.cpu_flags:
            why = f"has {', '.join(caps.cpu_flags)} but oneDNN may not use it (ONEDNN_MAX_CPU_ISA={caps.onednn_max_isa})"
        else:
            why = "has no native bf16 (bf16 would be emulated, many times slower)"
    else:
        return PrecisionChoice("32-true", f"precision auto: {where}: float32 (no mixed precision is chosen for it)")
    return PrecisionChoice(precision, f"precision auto -> {precision}: {where} {why}")


def autocast_dtype(precision: str) -> torch.dtype:
    """The dtype a Lightning precision computes its matmuls and convolutions in."""
    precision = str(precision)
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    if precision.startswith("64"):
        return torch.float64
    return torch.float32
