"""Pins PyTorch's CPU numerics so that re-running a fixture script reproduces the committed bytes on any
x86-64 machine with AVX2: PyTorch's own kernels, MKL and oneDNN would otherwise pick AVX-512 code paths
where available, which changes the last bits of the outputs (by ~1e-6). Import this module before torch;
an explicit environment wins."""

import os

for _k, _v in (("ATEN_CPU_CAPABILITY", "avx2"), ("MKL_CBWR", "AVX2"), ("ONEDNN_MAX_CPU_ISA", "AVX2"),
               ("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1")):
    os.environ.setdefault(_k, _v)
