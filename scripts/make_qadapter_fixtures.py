#!/usr/bin/env python3
"""Writes the `kind=qadapter` reference fixtures: a QLoRA adapter on a bitsandbytes 4-bit tiny Idefics2, and its merge.

Usage:
    .venv/bin/python scripts/make_qadapter_fixtures.py --out testdata/fixtures [--seed N]

Each case directory holds
    config.json, model.safetensors, inputs.safetensors   the float32 base (as for kind=model),
    adapter/                 PeftModel.save_pretrained of a LoRA adapter made on the 4-bit base (PEFT's bnb
                             Linear4bit layers; random A and B so that every module matters),
    expected.safetensors     logits: the 4-bit base + adapter (PEFT, eval mode);
                             merged_logits and merged.<tensor name>: the QLoRA merge as transformers and PEFT document
                             it: the 4-bit base dequantized (model.dequantize(dtype=float32): bitsandbytes'
                             dequantize_4bit), then PeftModel.from_pretrained(...).merge_and_unload(); every tensor of
                             the merged model and its logits,
    meta.json                kind=qadapter, quantization, versions, tolerances.
Float32 throughout, on the CPU (support_avx512bf16_for_cpu = False on each Linear4bit).
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
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import BitsAndBytesConfig, Idefics2ForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import idefics2_ref  # noqa: E402
import make_model_fixtures as mf  # noqa: E402

CASES = [
    dict(
        name="qadapter-nf4-double",
        quant_type="nf4",
        double_quant=True,
        lora=dict(
            r=4,
            lora_alpha=8,
            target_modules=r".*(text_model|modality_projection|perceiver_resampler).*"
            r"(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$",
        ),
        images=[[(16, 16)], [(12, 12)]],
        layouts=[[2, "img", 5], [3, "img", 4]],
        sides=["right", "right"],
    ),
]


def load_4bit(path, case):
    qcfg = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=case["quant_type"],
        bnb_4bit_use_double_quant=case["double_quant"],
        bnb_4bit_compute_dtype=torch.float32,
    )
    m = Idefics2ForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager", device_map="cpu", quantization_config=qcfg
    )
    for mod in m.modules():
        if isinstance(mod, bitsandbytes.nn.Linear4bit):
            mod.support_avx512bf16_for_cpu = False
    return m


def build_case(case, out_root, seed):
    index = [c["name"] for c in CASES].index(case["name"])
    case_seed = seed * 1000 + 800 + index
    gen = torch.Generator().manual_seed(case_seed)
    torch.manual_seed(case_seed)
    config = mf.tiny_config()
    config._attn_implementation = "eager"
    base = Idefics2ForConditionalGeneration(config)
    mf.reinit_weights(base, gen)
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
    base.save_pretrained(out_dir, safe_serialization=True)
    del base

    peft_model = get_peft_model(load_4bit(out_dir, case), LoraConfig(lora_dropout=0.0, init_lora_weights="gaussian", **case["lora"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    peft_model.eval()
    adapter_dir = os.path.join(out_dir, "adapter")
    peft_model.save_pretrained(adapter_dir)
    readme = os.path.join(adapter_dir, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    cfg_path = os.path.join(adapter_dir, "adapter_config.json")
    with open(cfg_path) as f:
        adapter_config = json.load(f)
    adapter_config["base_model_name_or_path"] = ".."
    with open(cfg_path, "w") as f:
        json.dump(adapter_config, f, indent=2, sort_keys=True)
        f.write("\n")
    expected = {}
    with torch.no_grad():
        expected["logits"] = peft_model(**{k: v for k, v in inputs.items() if k != "labels"}).logits.float().contiguous()
    del peft_model

    deq = load_4bit(out_dir, case)
    deq.dequantize(dtype=torch.float32)
    merged = PeftModel.from_pretrained(deq, adapter_dir).merge_and_unload()
    merged.eval()
    for name, p in merged.state_dict().items():
        expected["merged." + name] = p.detach().float().clone().contiguous()
    with torch.no_grad():
        expected["merged_logits"] = merged(**{k: v for k, v in inputs.items() if k != "labels"}).logits.float().contiguous()
    save_file(inputs, os.path.join(out_dir, "inputs.safetensors"))
    save_file(expected, os.path.join(out_dir, "expected.safetensors"))
    meta = {
        "kind": "qadapter",
        "reference": dict(mf.versions(), bitsandbytes=bitsandbytes.__version__),
        "atol": 1e-4,
        "rtol": 1e-4,
        "quantization": {"quant_type": case["quant_type"], "double_quant": case["double_quant"], "blocksize": 64},
        "notes": "QLoRA adapter (r=4, alpha=8, the tutorial's regex) on an NF4 base with double quantization; logits "
        "of base + adapter, and the merge of the dequantized base (merged.* tensors compared within 1e-6 relative to "
        "each tensor's largest entry: B·A summed in another order; logits within 1e-4).",
        "seed": case_seed,
    }
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return out_dir


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    idefics2_ref.install_original_position_ids()
    for case in CASES:
        print(build_case(case, args.out, args.seed))


if __name__ == "__main__":
    main()
