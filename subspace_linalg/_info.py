"""info(): build and runtime facts (what was built, with what, and what is visible)."""
from __future__ import annotations

import os

import torch

from . import _gemm, _native


def info() -> dict:
    """Build and runtime facts: package version, whether the CUDA kernels were built and
    for which architectures, the CUDA runtime they were built with, OpenMP and its thread
    count, torch's version, whether float32 CPU products take oneDNN, and the GPUs torch
    sees. Does not initialise CUDA unless a GPU is present (it then asks the runtime for
    the device count)."""
    C = _native._C
    out: dict = {
        "version": getattr(C, "VERSION", None) if C is not None else None,
        "native": C is not None,
        "native_error": _native.import_error(),
        "native_families": list(getattr(C, "FAMILIES", [])) if C is not None else [],
        "cuda_built": _native.has_cuda(),
        "cuda_architectures": (C.CUDA_ARCHITECTURES.split(",") if _native.has_cuda() else []),
        "cuda_runtime_version": _native.cuda_runtime_version(),
        "openmp": bool(C.WITH_OPENMP) if C is not None else False,
        "openmp_version": int(C.OPENMP_VERSION) if C is not None else 0,
        "openmp_threads": int(C.openmp_max_threads()) if C is not None else 0,
        "cpu_kernels_isa": str(C.small_dense_cpu_isa()) if C is not None else None,  # the small-dense kernels' target
        "torch_version": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "onednn_products": _gemm.enabled(),  # float32 CPU products through oneDNN (see _gemm)
        "gemm_policy": _gemm.policy(),  # which of them: "onednn" (all), "blas" (Intel MKL) or "torch" (none: no AVX-512)
    }
    gpus = []
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    out["gpus"] = gpus
    return out
