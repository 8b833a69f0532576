"""The machine a run's numbers come from: recorded with a run's state
(:mod:`mmseg_moase.engine.loops.run_state`) and by the benchmark tools."""
import platform
from typing import Any, Dict

import torch


def host_info() -> Dict[str, Any]:
    """The machine's part in the numbers: the same code, data and seed give
    other floats on another kind of CPU (torch and numpy pick their SIMD
    kernels by it) or with another thread count."""
    cpu = platform.processor() or None
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((ln.split(':', 1)[1].strip() for ln in f
                        if ln.startswith('model name')), cpu)
    except OSError:
        pass
    try:
        from numpy.core._multiarray_umath import __cpu_features__
        simd = [k for k in ('AVX2', 'AVX512F', 'AVX512_SKX', 'ASIMD', 'SVE')
                if __cpu_features__.get(k)]
    except ImportError:
        simd = None
    return dict(machine=platform.machine(), cpu=cpu,
                torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                numpy_simd=simd, torch_threads=torch.get_num_threads(),
                cuda_device=(torch.cuda.get_device_name()
                             if torch.cuda.is_available() else None))
