#!/usr/bin/env python3
"""Writes the `kind=quant` reference fixtures: bitsandbytes' own 4-bit quantization of small tensors.

Usage:
    .venv/bin/python scripts/make_quant_fixtures.py --out testdata/fixtures [--seed N]

One directory per (quant type, double quantization) pair, each quantizing the same source tensors:
    weights.safetensors   the sources (F32 or BF16, odd shapes, sizes that are not multiples of 64),
    expected.safetensors  for each source X, bitsandbytes.functional.quantize_4bit's output:
                          X.codes U8 (packed, two codes per byte), X.absmax (F32; or U8 with
                          X.nested_absmax F32 and X.offset F32 [] under double quantization),
                          X.dequant F32 (dequantize_4bit in the source dtype, widened to float32);
                          plus quant_map F32 [16] and, with double quantization, nested_quant_map F32 [256]
                          (the code tables bitsandbytes used); with double quantization also blockwise8.input F32,
                          blockwise8.codes U8 and blockwise8.absmax F32: quantize_blockwise (8-bit dynamic code, blocks
                          of 256, the quantizer of the nested scales) on inputs chosen near its rounding boundaries,
    quant.json            quant_type, blocksize, compress_statistics, versions,
    meta.json             kind=quant.
Everything is computed by bitsandbytes on the CPU. The machine that wrote the committed files has AVX2 and no
AVX-512: bitsandbytes' AVX-512 dequantization kernel treats a row whose length is a multiple of 16 but not of the
blocksize differently, so such a machine may not reproduce w_bf16_r48.dequant.
"""

import os

import cpu_pin  # noqa: F401  (before torch: pins the CPU code paths)

import argparse
import json
import shutil

import bitsandbytes
import bitsandbytes.functional as F
import numpy as np
import torch
from safetensors.torch import save_file

BLOCKSIZE = 64


def sources(seed):
    """Source tensors: odd shapes, both dtypes, remainders, zero blocks, values on the code midpoints."""
    g = torch.Generator().manual_seed(seed)

    def normal(*shape, scale=0.02):
        return torch.randn(*shape, generator=g) * scale

    out = {}
    # odd last dimension (bitsandbytes' generic dequantization path) and an odd element count (a pad nibble)
    out["w_f32_37x53"] = normal(37, 53)
    # whole blocks, bfloat16 source
    out["w_bf16_48x96"] = normal(48, 96).to(torch.bfloat16)
    # rows of 48: a multiple of 16 but not of 64, 3 whole blocks
    out["w_bf16_r48"] = normal(4, 48).to(torch.bfloat16)
    # a trailing partial block (350 = 5·64 + 30), float32
    out["w_f32_5x70"] = normal(5, 70, scale=1.5)
    # one dimension only, partial block of 36
    out["w_f32_100"] = normal(100, scale=3.0)
    # heavy tails: a few outliers per row as real weight matrices have
    t = normal(24, 130)
    t[torch.arange(24), torch.randint(0, 130, (24,), generator=g)] *= 40
    out["w_bf16_outliers"] = t.to(torch.bfloat16)
    # an all-zero whole block, an all-zero trailing block (its stored absmax is bitsandbytes' 1e-38 floor)
    z = normal(3, 50)
    z[0, :] = 0
    z.view(-1)[:64] = 0
    z.view(-1)[128:] = 0
    out["w_f32_zero_blocks"] = z
    # values exactly on the midpoints of both code tables, and around FP4's two zeros
    for name, qt in (("nf4", "nf4"), ("fp4", "fp4")):
        code = F.get_4bit_type(qt, device="cpu")
        srt = torch.sort(code).values
        mids = (srt[:-1] + srt[1:]) / 2
        vals = torch.cat([torch.tensor([1.0]), mids, -mids, torch.tensor([0.0, 1e-4, -1e-4, 0.0026, -0.0026, 0.002604, -0.002604])])
        vals = torch.cat([vals, torch.linspace(-1, 1, 128 - vals.numel())])
        out[f"w_f32_ties_{name}"] = vals.reshape(2, 64).contiguous()
    # values next to midpoint·absmax for which scaling by the float32 reciprocal of the absmax (whole blocks) and
    # dividing by it (a trailing block) fall in different buckets: 32 such values per block, led by the absmax
    for name, qt in (("nf4", "nf4"), ("fp4", "fp4")):
        out[f"w_f32_near_mid_{name}"] = near_midpoints(qt, np.random.default_rng(seed))
    # many blocks (520 scales: 65 vectors of 8 for PyTorch's cascade summation of their mean, one level flush;
    # nested blocks of 256, 256 and 8) with scales spread over a decade or two, as across a real weight's rows
    big = normal(130, 256) * torch.exp(normal(130, 1, scale=1.0))
    out["w_bf16_130x256"] = big.to(torch.bfloat16)
    return {k: v.contiguous() for k, v in out.items()}


def near_midpoints(quant_type, rng):
    """5 whole blocks and a trailing block of 40, each led by its absmax a and filled with values x a few float32 steps
    from a code midpoint times a where bucket(x·(1/a)) != bucket(x/a), padded with 0."""
    code = F.get_4bit_type(quant_type, device="cpu")
    mids = ((torch.sort(code).values[:-1] + torch.sort(code).values[1:]) / 2).numpy()
    blocks = []
    for size in (64, 64, 64, 64, 64, 40):
        while True:
            a = np.float32(rng.uniform(0.001, 3.0))
            inv = np.float32(1) / a
            picks = []
            for m in mids:
                x = np.float32(m) * a
                for x in [x] + [np.nextafter(x, np.float32(d * np.inf)) for d in (-1, 1)]:
                    if np.searchsorted(mids, np.float32(x * inv)) != np.searchsorted(mids, np.float32(x / a)):
                        picks.append(x)
            if len(picks) >= 4:
                break
        vals = np.zeros(size, dtype=np.float32)
        vals[0] = a
        picks = np.resize(np.array(picks, dtype=np.float32), min(32, size - 1))
        vals[1 : 1 + len(picks)] = picks
        vals[1 + len(picks) :] = rng.uniform(-1, 1, size - 1 - len(picks)).astype(np.float32) * a
        blocks.append(vals)
    return torch.from_numpy(np.concatenate(blocks))


def blockwise8_input(seed):
    """Inputs for bitsandbytes' 8-bit blockwise quantizer (the one double quantization runs on the scales): 4 blocks of
    256, each led by ±1 so that the scale is 1, holding values on and next to the midpoints of the dynamic code (where
    its 65536-bin lookup table and an exact nearest-code search disagree) and random ones."""
    rng = np.random.default_rng(seed)
    code = F.create_dynamic_map().numpy()
    mids = (code[:-1] + code[1:]) / np.float32(2)
    near = np.concatenate([mids, np.nextafter(mids, np.float32(2)), np.nextafter(mids, np.float32(-2))])
    near = near[np.abs(near) <= 1][:400]
    rest = rng.uniform(-1, 1, 1020 - len(near)).astype(np.float32)
    body = np.concatenate([near, rest]).astype(np.float32)
    x = np.insert(body, [0, 255, 510, 765], np.array([1, -1, 1, -1], dtype=np.float32))
    return torch.from_numpy(x.copy())


def case(out_dir, name, quant_type, double_quant, srcs, versions):
    d = os.path.join(out_dir, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    expected = {}
    for key, x in srcs.items():
        packed, state = F.quantize_4bit(
            x, blocksize=BLOCKSIZE, compress_statistics=double_quant, quant_type=quant_type, quant_storage=torch.uint8
        )
        deq = F.dequantize_4bit(packed, state)
        # (a 1-D weight comes back as [1, n] from bitsandbytes' CPU kernel)
        assert deq.dtype == x.dtype and deq.numel() == x.numel()
        deq = deq.reshape(x.shape)
        expected[f"{key}.codes"] = packed.reshape(-1).contiguous()
        if double_quant:
            expected[f"{key}.absmax"] = state.absmax.contiguous()
            expected[f"{key}.nested_absmax"] = state.state2.absmax.contiguous()
            expected[f"{key}.offset"] = state.offset.reshape(()).to(torch.float32).contiguous()
            assert state.state2.blocksize == 256
            expected["nested_quant_map"] = state.state2.code.contiguous()
        else:
            expected[f"{key}.absmax"] = state.absmax.contiguous()
        expected[f"{key}.dequant"] = deq.to(torch.float32).contiguous()
        expected["quant_map"] = state.code.contiguous()
    if double_quant:
        x8 = blockwise8_input(14)
        q8, st8 = F.quantize_blockwise(x8, blocksize=256)
        expected["blockwise8.input"] = x8
        expected["blockwise8.codes"] = q8.contiguous()
        expected["blockwise8.absmax"] = st8.absmax.contiguous()
    save_file(srcs, os.path.join(d, "weights.safetensors"))
    save_file(expected, os.path.join(d, "expected.safetensors"))
    with open(os.path.join(d, "quant.json"), "w") as f:
        json.dump(
            dict(quant_type=quant_type, blocksize=BLOCKSIZE, compress_statistics=double_quant, bitsandbytes=versions["bitsandbytes"]),
            f,
            indent=2,
        )
        f.write("\n")
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(
            dict(
                kind="quant",
                reference=versions,
                atol=0,
                rtol=0,
                notes=f"bitsandbytes quantize_4bit/dequantize_4bit, {quant_type}, blocksize {BLOCKSIZE}, "
                f"compress_statistics={double_quant}, on the CPU: codes, scales and offsets are compared bit for bit, "
                "dequantized values for equality",
            ),
            f,
            indent=2,
        )
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="testdata/fixtures")
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    versions = dict(bitsandbytes=bitsandbytes.__version__, torch=torch.__version__.split("+")[0], numpy=np.__version__)
    srcs = sources(args.seed)
    for qt in ("nf4", "fp4"):
        for dq in (False, True):
            name = f"quant-{qt}" + ("-double" if dq else "")
            case(args.out, name, qt, dq, srcs, versions)
            print("wrote", os.path.join(args.out, name))


if __name__ == "__main__":
    main()
