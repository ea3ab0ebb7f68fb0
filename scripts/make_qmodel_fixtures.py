#!/usr/bin/env python3
"""Writes the `kind=qmodel` reference fixtures: a tiny Idefics2 loaded by transformers in 4 bits (bitsandbytes, CPU).

Usage:
    .venv/bin/python scripts/make_qmodel_fixtures.py --out testdata/fixtures [--seed N]

Each case directory holds
    config.json, model.safetensors   the float32 base model, as save_pretrained writes it (a kind=model fixture's files),
    inputs.safetensors               as for kind=model,
    prequantized/                    the 4-bit model as transformers' save_pretrained writes it: config.json with its
                                     quantization_config; model.safetensors with each Linear's packed uint8 weight and
                                     its .absmax, .quant_map (.nested_absmax, .nested_quant_map) and
                                     .quant_state.bitsandbytes__<type> tensors,
    expected.safetensors             vision_last_hidden_state, image_hidden_states, logits, loss of the 4-bit model,
    meta.json                        kind=qmodel, quantization (quant_type, double_quant), versions, tolerances.
The 4-bit model is `from_pretrained(base, quantization_config=BitsAndBytesConfig(load_in_4bit=True, ...))` in float32
(compute dtype float32) on the CPU, i.e. transformers quantizes every Linear but lm_head while loading. Each Linear4bit
gets support_avx512bf16_for_cpu = False so that bitsandbytes keeps its generic dequantize-then-matmul path on any CPU
(its AVX512-BF16 inference repacking needs out_features % 32 == 0 and rounds through bfloat16). The outputs are
re-checked against the prequantized/ directory reloaded by transformers.
"""

import os

import cpu_pin  # noqa: F401  (before torch: pins the CPU code paths)

import argparse
import json
import shutil
import sys

import bitsandbytes
import bitsandbytes.nn
import torch
from safetensors.torch import save_file
from transformers import BitsAndBytesConfig, Idefics2ForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import idefics2_ref  # noqa: E402
import make_model_fixtures as mf  # noqa: E402

ATOL = 1e-4
RTOL = 1e-4

CASES = [
    dict(
        name="qmodel-nf4-double",
        quant_type="nf4",
        double_quant=True,
        notes="NF4 with double quantization (the QLoRA recipe's storage), every Linear but lm_head in 4 bits.",
        images=[[(16, 16)], [(12, 8)]],
        layouts=[[2, "img", 5], [3, "img", 4]],
        sides=["right", "right"],
    ),
    dict(
        name="qmodel-fp4",
        quant_type="fp4",
        double_quant=False,
        notes="FP4 without double quantization (float32 absmax per block of 64).",
        images=[[(16, 16)], [(8, 16)]],
        layouts=[[4, "img", 3], [2, "img", 6]],
        sides=["right", "right"],
    ),
]


def load_4bit(path, case, pre_quantized):
    kwargs = {}
    if not pre_quantized:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=case["quant_type"],
            bnb_4bit_use_double_quant=case["double_quant"],
            bnb_4bit_compute_dtype=torch.float32,
        )
    m = Idefics2ForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager", device_map="cpu", **kwargs
    )
    n = 0
    for mod in m.modules():
        if isinstance(mod, bitsandbytes.nn.Linear4bit):
            mod.support_avx512bf16_for_cpu = False
            n += 1
    m.eval()
    return m, n


def build_case(case, out_root, seed):
    index = [c["name"] for c in CASES].index(case["name"])
    case_seed = seed * 1000 + index
    gen = torch.Generator().manual_seed(case_seed)
    torch.manual_seed(case_seed)

    config = mf.tiny_config()
    config._attn_implementation = "eager"
    model = Idefics2ForConditionalGeneration(config)
    mf.reinit_weights(model, gen)
    model.eval()

    pixel_values, pixel_attention_mask = mf.make_pixels(case["images"], gen)
    seqs = [mf.make_sequence(gen, layout) for layout in case["layouts"]]
    input_ids, attention_mask = mf.pad_batch(seqs, case["sides"])
    labels = mf.make_labels(input_ids, attention_mask)
    b, t = input_ids.shape
    inputs = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pixel_values": pixel_values,
        "pixel_attention_mask": pixel_attention_mask,
        "labels": labels,
        "position_ids": torch.arange(t, dtype=torch.int64)[None, :].expand(b, t).contiguous(),
    }

    out_dir = os.path.join(out_root, case["name"])
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    del model

    q, n4 = load_4bit(out_dir, case, pre_quantized=False)
    if n4 != n_linear - 1:
        raise AssertionError(f"{n4} Linear4bit modules, expected every Linear but lm_head ({n_linear - 1})")
    if isinstance(q.lm_head, bitsandbytes.nn.Linear4bit):
        raise AssertionError("lm_head was quantized")
    expected = idefics2_ref.run_reference(q, inputs)
    pre_dir = os.path.join(out_dir, "prequantized")
    q.save_pretrained(pre_dir, safe_serialization=True)
    del q

    # the saved 4-bit checkpoint must give the same outputs when transformers loads it as it is
    q2, _ = load_4bit(pre_dir, case, pre_quantized=True)
    again = idefics2_ref.run_reference(q2, inputs)
    for k in ("logits", "image_hidden_states"):
        d = (again[k] - expected[k]).abs().max().item()
        if d != 0:
            raise AssertionError(f"{k}: reloading the 4-bit checkpoint moved outputs by {d}")

    save_file(inputs, os.path.join(out_dir, "inputs.safetensors"))
    save_file(expected, os.path.join(out_dir, "expected.safetensors"))
    meta = {
        "kind": "qmodel",
        "reference": dict(mf.versions(), bitsandbytes=bitsandbytes.__version__),
        "atol": ATOL,
        "rtol": RTOL,
        "quantization": {"quant_type": case["quant_type"], "double_quant": case["double_quant"], "blocksize": 64},
        "notes": case["notes"]
        + " The expected outputs are transformers' 4-bit model (float32 compute, eager attention) on the inputs; "
        "prequantized/ is that model's save_pretrained, which reproduces them exactly.",
        "seed": case_seed,
    }
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return out_dir


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="fixture root directory")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    idefics2_ref.install_original_position_ids()
    os.makedirs(args.out, exist_ok=True)
    for case in CASES:
        d = build_case(case, args.out, args.seed)
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
        print(f"{case['name']}: {size} bytes")


if __name__ == "__main__":
    main()
