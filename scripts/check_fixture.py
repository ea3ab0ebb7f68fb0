#!/usr/bin/env python3
"""Reloads kind=model fixtures with from_pretrained and recomputes their outputs.

Usage:
    .venv/bin/python scripts/check_fixture.py testdata/fixtures/model-tiny-basic [more dirs or roots ...]

Proves that config.json + model.safetensors + inputs.safetensors of each fixture reproduce its
expected.safetensors. Logits are compared only at positions whose attention_mask is 1 (as the Go tests do).
Exits non-zero on the first mismatch.
"""

import os

import cpu_pin  # noqa: F401  (before torch: pins the CPU code paths)

import json
import sys

import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import idefics2_ref  # noqa: E402

# Same library and pinned kernels: the outputs should be identical; a little summation-order noise is allowed
# in case a machine picks other kernels anyway.
ATOL = 2e-5
RTOL = 2e-5


def check(path):
    """Returns the largest absolute difference over all compared tensors; raises on a mismatch."""
    from transformers import Idefics2ForConditionalGeneration

    with open(os.path.join(path, "meta.json")) as f:
        meta = json.load(f)
    if meta.get("kind") != "model":
        raise ValueError(f"{path}: not a kind=model fixture")
    idefics2_ref.install_original_position_ids()
    torch.set_num_threads(1)
    model = Idefics2ForConditionalGeneration.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    inputs = load_file(os.path.join(path, "inputs.safetensors"))
    expected = load_file(os.path.join(path, "expected.safetensors"))
    got = idefics2_ref.run_reference(model, inputs)

    keep = inputs["attention_mask"].bool()
    worst = 0.0
    for name, want in expected.items():
        have = got[name]
        if have.shape != want.shape or have.dtype != want.dtype:
            raise AssertionError(f"{path}: {name} is {have.dtype}{list(have.shape)}, expected {want.dtype}{list(want.shape)}")
        if name == "logits":
            have, want = have[keep], want[keep]
        diff = float((have - want).abs().max()) if want.numel() else 0.0
        if not bool(((have - want).abs() <= ATOL + RTOL * want.abs()).all()):
            raise AssertionError(f"{path}: {name} differs by up to {diff}")
        worst = max(worst, diff)
    return worst


def fixture_dirs(paths):
    for p in paths:
        if os.path.exists(os.path.join(p, "meta.json")):
            yield p
        else:
            for name in sorted(os.listdir(p)):
                d = os.path.join(p, name)
                meta = os.path.join(d, "meta.json")
                if os.path.exists(meta):
                    with open(meta) as f:
                        if json.load(f).get("kind") == "model":
                            yield d


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for d in fixture_dirs(sys.argv[1:]):
        print(f"{d}: ok (max |diff| {check(d):.3g})")


if __name__ == "__main__":
    main()
