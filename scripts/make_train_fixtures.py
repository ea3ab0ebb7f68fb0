#!/usr/bin/env python3
"""Writes the `kind=train` reference fixtures: PEFT LoRA/DoRA gradients and AdamW steps on a tiny Idefics2.

Usage:
    .venv/bin/python scripts/make_train_fixtures.py --out testdata/fixtures [--seed N] [--only NAME]

Each case directory holds a model fixture's files (config.json, model.safetensors, inputs.safetensors) plus
    adapter_config.json       written by PeftModel.save_pretrained,
    adapter_init.safetensors  the initial LoRA weights in PEFT's saved key format (lora_B non-zero, so that
                              every gradient is informative),
    train.json                lr, betas, eps, weight_decay, max_grad_norm, steps,
    expected.safetensors      loss (before any step), grad.<saved key> of every trainable tensor after one
                              backward pass, loss_step_<k> for k = 1..steps (the loss after k AdamW steps on
                              the same batch),
    meta.json                 kind=train, versions, tolerances.
The optimizer is torch.optim.AdamW over two parameter groups as HF Trainer builds them (weight decay except
on biases and norms, Trainer.get_decay_parameter_names), gradients clipped with clip_grad_norm_, a constant
learning rate. Dropout is 0 so the run is deterministic.
"""

import argparse
import json
import os
import shutil
import sys

import cpu_pin  # noqa: F401  (before torch: pins the CPU code paths)

import torch  # noqa: E402
from safetensors.torch import save_file

import peft
import transformers
from peft import LoraConfig, get_peft_model
from transformers import Idefics2ForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import idefics2_ref  # noqa: E402
import make_model_fixtures as mf  # noqa: E402

CASES = [
    dict(
        name="train-lora-connector",
        notes="LoRA r=4 alpha=8 on text q/k/v/o/gate/up/down and vision q/v/out_proj/fc1 (regex), the whole "
        "connector fully trained through modules_to_save; two images per sample, right padding.",
        lora=dict(
            r=4,
            lora_alpha=8,
            target_modules=r".*(text_model|vision_model).*(q_proj|k_proj|v_proj|o_proj|out_proj|gate_proj|up_proj|down_proj|fc1)$",
            modules_to_save=["connector"],
        ),
        images=[[(16, 16), (12, 8)], [(8, 16)]],
        layouts=[[2, "img", 3, "img", 4], [3, "img", 6]],
        sides=["right", "right"],
    ),
    dict(
        name="train-dora-rslora",
        notes="DoRA with rsLoRA scaling (r=4, alpha=4 -> s=2) on a list of target names (q_proj, v_proj, "
        "down_proj: text, vision and perceiver modules named so), no modules_to_save; left padding.",
        lora=dict(r=4, lora_alpha=4, use_dora=True, use_rslora=True, target_modules=["q_proj", "v_proj", "down_proj"]),
        images=[[(16, 16)], [(12, 12)]],
        layouts=[[2, "img", 5], [4, "img", 2]],
        sides=["left", "right"],
    ),
]

TRAIN = dict(lr=2e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.05, max_grad_norm=0.5, steps=5)


def saved_key(name):
    """In-memory PEFT parameter name -> the key save_pretrained writes."""
    return name.replace(".modules_to_save.default", "").replace(".lora_A.default.", ".lora_A.").replace(
        ".lora_B.default.", ".lora_B."
    ).replace(".lora_magnitude_vector.default.weight", ".lora_magnitude_vector")


def build_case(case, out_root, seed):
    index = [c["name"] for c in CASES].index(case["name"])
    case_seed = seed * 1000 + 500 + index
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
    inputs = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        pixel_values=pixel_values,
        pixel_attention_mask=pixel_attention_mask,
        labels=labels,
    )

    out_dir = os.path.join(out_root, case["name"])
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    base.save_pretrained(out_dir, safe_serialization=True)
    del base
    # The reference runs in float64: the fixture then holds the exact result (to float32 storage), and the Go
    # side's float32 rounding is all that the tolerance has to absorb. (A float32 reference carries its own
    # rounding of ~1e-4 relative on the deepest gradients of this random model, as large as the tolerance.)
    base = Idefics2ForConditionalGeneration.from_pretrained(out_dir, dtype=torch.float64, attn_implementation="eager")

    lcfg = LoraConfig(lora_dropout=0.0, init_lora_weights="gaussian", **case["lora"])
    model = get_peft_model(base, lcfg)
    # lora_B is zero after PEFT's init; draw it (and A) again so that every gradient is informative.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "lora_magnitude_vector" in name:
                p.mul_(1 + 0.1 * torch.randn(p.shape, generator=gen))
    model.train()  # dropout is 0; train mode matches what a fine-tuning run does
    adapter_init = {
        saved_key(n): p.detach().float().clone().contiguous()
        for n, p in model.named_parameters()
        if ".lora_" in n
    }
    model.save_pretrained(out_dir)  # adapter_config.json (+ adapter_model.safetensors, removed below)
    os.remove(os.path.join(out_dir, "adapter_model.safetensors"))
    os.remove(os.path.join(out_dir, "README.md"))
    # PEFT records the absolute path of the base model; make the file independent of --out.
    cfg_path = os.path.join(out_dir, "adapter_config.json")
    with open(cfg_path) as f:
        adapter_config = json.load(f)
    adapter_config["base_model_name_or_path"] = case["name"]
    if isinstance(adapter_config.get("target_modules"), list):  # PEFT writes a set in arbitrary order
        adapter_config["target_modules"] = sorted(adapter_config["target_modules"])
    with open(cfg_path, "w") as f:
        json.dump(adapter_config, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file(adapter_init, os.path.join(out_dir, "adapter_init.safetensors"))

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay_names = set(transformers.Trainer.get_decay_parameter_names(None, model))
    groups = [
        dict(params=[p for n, p in trainable if n in decay_names], weight_decay=TRAIN["weight_decay"]),
        dict(params=[p for n, p in trainable if n not in decay_names], weight_decay=0.0),
    ]
    opt = torch.optim.AdamW(groups, lr=TRAIN["lr"], betas=tuple(TRAIN["betas"]), eps=TRAIN["eps"], foreach=False)

    expected = {}
    inputs64 = {k: (v.double() if v.is_floating_point() else v) for k, v in inputs.items()}
    # the float64 run starts from exactly the float32 values the Go side loads
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(p.float().double())
    out = model(**inputs64)
    out.loss.backward()
    expected["loss"] = out.loss.detach().float().clone()
    for n, p in trainable:
        expected["grad." + saved_key(n)] = p.grad.detach().float().clone().contiguous()
    for k in range(1, TRAIN["steps"] + 1):
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable], TRAIN["max_grad_norm"])
        opt.step()
        opt.zero_grad()
        out = model(**inputs64)
        expected[f"loss_step_{k}"] = out.loss.detach().float().clone()
        if k < TRAIN["steps"]:
            out.loss.backward()

    save_file(inputs, os.path.join(out_dir, "inputs.safetensors"))
    save_file(expected, os.path.join(out_dir, "expected.safetensors"))
    with open(os.path.join(out_dir, "train.json"), "w") as f:
        json.dump(TRAIN, f, indent=2)
        f.write("\n")
    meta = {
        "kind": "train",
        "reference": mf.versions(),
        "atol": 1e-5,
        "rtol": 1e-4,
        "notes": case["notes"]
        + " Gradients: float32, compared within 1e-4 relative (plus 1e-5 absolute for near-zero entries): "
        "backward sums run in a different order than PyTorch's. Losses after k steps: 1e-5 relative. "
        + mf.COMMON_NOTES,
        "seed": case_seed,
        "trainable": len(trainable),
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
