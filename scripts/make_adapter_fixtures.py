#!/usr/bin/env python3
"""Writes the `kind=adapter` reference fixtures: adapters trained and saved by PEFT, and their logits.

Usage:
    .venv/bin/python scripts/make_adapter_fixtures.py --out testdata/fixtures [--seed N] [--only NAME]

Each case directory holds a model fixture's files (config.json, model.safetensors, generation_config.json: the
base model, as save_pretrained writes it; inputs.safetensors) plus
    adapter/adapter_config.json        written by PeftModel.save_pretrained (base_model_name_or_path made
    adapter/adapter_model.safetensors  relative), after a few AdamW steps of PEFT training on the case's batch,
    expected.safetensors               `logits` F32 [B,T,V]: the PEFT model (base + that adapter, as
                                       PeftModel.from_pretrained loads it) in eval mode,
    meta.json                          kind=adapter, versions, tolerances.
The adapter lives in its own sub-directory because from_pretrained on a directory holding adapter_config.json
loads the adapter instead of the model. The reference logits are computed in float64 from the stored float32
(or bfloat16) values, so the Go side's float32 rounding is all the tolerance absorbs. (Padding is on the right:
transformers' eager attention in float64 turns left-padded rows into NaN.)
"""

import os

import cpu_pin  # noqa: F401  (before torch: pins the CPU code paths)

import argparse
import json
import shutil
import sys

import torch
from safetensors.torch import save_file

import peft
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import Idefics2ForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import idefics2_ref  # noqa: E402
import make_model_fixtures as mf  # noqa: E402

CASES = [
    dict(
        name="adapter-lora-connector",
        notes="LoRA r=4 alpha=8 (regex over vision, connector and text projections) with the connector in "
        "modules_to_save: PEFT leaves the targeted connector Linears unwrapped and trains the connector whole, so "
        "the file holds vision and text LoRA tensors and every connector tensor under its original path.",
        lora=dict(
            r=4,
            lora_alpha=8,
            target_modules=r".*(vision_model|text_model|modality_projection|perceiver_resampler).*"
            r"(q_proj|k_proj|v_proj|o_proj|out_proj|fc1|fc2|gate_proj|up_proj|down_proj)$",
            modules_to_save=["connector"],
        ),
        images=[[(16, 16), (12, 8)], [(8, 16)]],
        layouts=[[2, "img", 3, "img", 4], [3, "img", 6]],
        sides=["right", "right"],
    ),
    dict(
        name="adapter-dora-patterns",
        notes="DoRA with rsLoRA scaling, r=4 alpha=4, rank_pattern {down_proj: 2}, alpha_pattern {v_proj: 3}, on "
        "a list of names (q_proj, v_proj, down_proj, fc2: vision, perceiver and text modules named so).",
        lora=dict(
            r=4,
            lora_alpha=4,
            use_dora=True,
            use_rslora=True,
            target_modules=["q_proj", "v_proj", "down_proj", "fc2"],
            rank_pattern={"down_proj": 2},
            alpha_pattern={"v_proj": 3},
        ),
        images=[[(16, 16)], [(12, 12)]],
        layouts=[[2, "img", 5], [4, "img", 2]],
        sides=["right", "right"],
    ),
    dict(
        name="adapter-lora-bf16",
        notes="LoRA r=2 alpha=16 on q_proj, o_proj, gate_proj and lm_head, PEFT's default (kaiming) init, adapter "
        "tensors stored in bfloat16 (as a bf16 training run saves them); the second sample has no image.",
        lora=dict(r=2, lora_alpha=16, target_modules=["q_proj", "o_proj", "gate_proj", "lm_head"],
                  init_lora_weights=True),
        bf16=True,
        images=[[(16, 12)], []],
        layouts=[[3, "img", 4], [9]],
        sides=["right", "right"],
    ),
]

TRAIN = dict(lr=1e-2, steps=3)


def build_case(case, out_root, seed):
    index = [c["name"] for c in CASES].index(case["name"])
    case_seed = seed * 1000 + 700 + index
    gen = torch.Generator().manual_seed(case_seed)
    torch.manual_seed(case_seed)

    config = mf.tiny_config()
    config._attn_implementation = "eager"
    base = Idefics2ForConditionalGeneration(config)
    mf.reinit_weights(base, gen)

    images = [s for s in case["images"] if s]
    seqs = [mf.make_sequence(gen, layout) for layout in case["layouts"]]
    input_ids, attention_mask = mf.pad_batch(seqs, case["sides"])
    labels = mf.make_labels(input_ids, attention_mask)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    if images:
        # samples without images get an all-padding image slot (pixel_attention_mask 0), as HF collates them
        samples = [s if s else [(8, 8)] for s in case["images"]]
        pixel_values, pixel_attention_mask = mf.make_pixels(samples, gen)
        for i, s in enumerate(case["images"]):
            if not s:
                pixel_values[i] = 0
                pixel_attention_mask[i] = 0
        inputs.update(pixel_values=pixel_values, pixel_attention_mask=pixel_attention_mask)

    out_dir = os.path.join(out_root, case["name"])
    adapter_dir = os.path.join(out_dir, "adapter")
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    base.save_pretrained(out_dir, safe_serialization=True)
    del base

    # PEFT training, float32, a few AdamW steps on the case's batch: every adapter tensor moves away from its init.
    base = Idefics2ForConditionalGeneration.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager")
    lcfg = LoraConfig(lora_dropout=0.0, **{"init_lora_weights": "gaussian", **case["lora"]})
    model = get_peft_model(base, lcfg)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=TRAIN["lr"], foreach=False)
    for _ in range(TRAIN["steps"]):
        model(**inputs).loss.backward()
        opt.step()
        opt.zero_grad()
    if case.get("bf16"):
        with torch.no_grad():
            for n, p in model.named_parameters():
                if p.requires_grad:
                    p.data = p.data.to(torch.bfloat16)
    model.save_pretrained(adapter_dir)
    os.remove(os.path.join(adapter_dir, "README.md"))
    cfg_path = os.path.join(adapter_dir, "adapter_config.json")
    with open(cfg_path) as f:
        adapter_config = json.load(f)
    adapter_config["base_model_name_or_path"] = case["name"]  # PEFT records the absolute path
    if isinstance(adapter_config.get("target_modules"), list):  # a set in PEFT: its order varies between runs
        adapter_config["target_modules"] = sorted(adapter_config["target_modules"])
    with open(cfg_path, "w") as f:
        json.dump(adapter_config, f, indent=2, sort_keys=True)
        f.write("\n")
    del model, base

    # The reference: the saved files as PeftModel.from_pretrained loads them, evaluated in float64.
    base = Idefics2ForConditionalGeneration.from_pretrained(out_dir, dtype=torch.float64, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=False)
    model = model.double().eval()
    with torch.no_grad():
        inputs64 = {k: (v.double() if v.is_floating_point() else v) for k, v in inputs.items() if k != "labels"}
        logits = model(**inputs64).logits.float().contiguous()

    save_file(inputs, os.path.join(out_dir, "inputs.safetensors"))
    save_file({"logits": logits}, os.path.join(out_dir, "expected.safetensors"))
    meta = {
        "kind": "adapter",
        "reference": mf.versions(),
        "atol": 1e-4,
        "rtol": 1e-4,
        "notes": case["notes"] + f" Trained by PEFT: {TRAIN['steps']} AdamW steps (lr {TRAIN['lr']}) on the case's "
        "batch. Logits: PeftModel.from_pretrained(base, adapter/) in float64, eval mode; positions whose "
        "attention_mask is 0 are not compared. " + mf.COMMON_NOTES,
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
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    idefics2_ref.install_original_position_ids()
    cases = [c for c in CASES if args.only is None or c["name"] == args.only]
    if not cases:
        sys.exit(f"no case named {args.only!r}")
    for case in cases:
        d = build_case(case, args.out, args.seed)
        print(d, "peft", peft.__version__)


if __name__ == "__main__":
    main()
