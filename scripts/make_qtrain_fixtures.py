#!/usr/bin/env python3
"""Writes the `kind=qtrain` reference fixtures: PEFT LoRA gradients and AdamW steps on a 4-bit (bitsandbytes) tiny Idefics2.

Usage:
    .venv/bin/python scripts/make_qtrain_fixtures.py --out testdata/fixtures [--seed N]

Each case directory holds what a kind=train fixture holds (config.json and model.safetensors: the float32 base;
inputs.safetensors, adapter_config.json, adapter_init.safetensors, train.json, expected.safetensors with loss,
grad.<saved key> and loss_step_<k>) plus "quantization" in meta.json and, for DoRA, dora_init.safetensors: the
magnitudes PEFT initialised from the 4-bit base (before the fixture perturbs them). The reference is QLoRA as transformers and PEFT
run it: the base loaded with BitsAndBytesConfig(load_in_4bit=True, ...) on the CPU (every Linear but lm_head
quantized while loading; support_avx512bf16_for_cpu = False on each Linear4bit), PEFT's bnb Linear4bit LoRA layers on
top. The forward and backward then run in float64 from exactly the float32 values the Go side holds, so that the
fixture holds the exact result and the Go side's float32 rounding is all the tolerance absorbs: every floating tensor
is widened, and each Linear4bit computes linear(x, W) with W = bitsandbytes.functional.dequantize_4bit(weight,
quant_state) (bitsandbytes' own float32 dequantization, widened exactly) — what Linear4bit computes, without its CPU
kernel's float64 path, which bitsandbytes 0.50.2 leaves unwritten (dequantize_4bit to float64 returns an
uninitialised tensor).
"""

import argparse
import json
import os
import shutil
import sys

import cpu_pin  # noqa: F401  (before torch: pins the CPU code paths)

import bitsandbytes  # noqa: E402
import bitsandbytes.nn  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file

import transformers
from peft import LoraConfig, get_peft_model
from transformers import BitsAndBytesConfig, Idefics2ForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import idefics2_ref  # noqa: E402
import make_model_fixtures as mf  # noqa: E402
from make_train_fixtures import TRAIN, saved_key  # noqa: E402

CASES = [
    dict(
        name="qtrain-qlora-nf4",
        notes="QLoRA as the Idefics2 tutorial: NF4 base with double quantization, LoRA r=4 alpha=8 on the text model "
        "and the connector through the tutorial's regex; right padding.",
        quant_type="nf4",
        double_quant=True,
        lora=dict(
            r=4,
            lora_alpha=8,
            target_modules=r".*(text_model|modality_projection|perceiver_resampler).*"
            r"(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$",
        ),
        images=[[(16, 16)], [(12, 8)]],
        layouts=[[2, "img", 5], [3, "img", 4]],
        sides=["right", "right"],
    ),
    dict(
        name="qtrain-dora-fp4",
        notes="DoRA (r=4, alpha=4) on q_proj, v_proj and down_proj (text, vision and perceiver modules named so) "
        "over an FP4 base without double quantization; PEFT's initial magnitudes (row norms of the dequantized "
        "weights) are in dora_init.safetensors.",
        quant_type="fp4",
        double_quant=False,
        lora=dict(r=4, lora_alpha=4, use_dora=True, target_modules=["q_proj", "v_proj", "down_proj"]),
        images=[[(16, 16)], [(12, 12)]],
        layouts=[[2, "img", 5], [4, "img", 2]],
        sides=["right", "right"],
    ),
]


def linear4bit_float64(self, x):
    """Linear4bit.forward in float64: bitsandbytes' float32 dequantization of the weight, widened, then linear."""
    w = bitsandbytes.functional.dequantize_4bit(self.weight.data, self.weight.quant_state)
    assert w.dtype == torch.float32
    bias = None if self.bias is None else self.bias.double()
    return torch.nn.functional.linear(x.double(), w.double(), bias)


def build_case(case, out_root, seed):
    index = [c["name"] for c in CASES].index(case["name"])
    case_seed = seed * 1000 + 700 + index
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
    qcfg = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=case["quant_type"],
        bnb_4bit_use_double_quant=case["double_quant"],
        bnb_4bit_compute_dtype=torch.float32,
    )
    base = Idefics2ForConditionalGeneration.from_pretrained(
        out_dir, dtype=torch.float32, attn_implementation="eager", device_map="cpu", quantization_config=qcfg
    )
    n4 = 0
    for mod in base.modules():
        if isinstance(mod, bitsandbytes.nn.Linear4bit):
            mod.support_avx512bf16_for_cpu = False
            mod.forward = linear4bit_float64.__get__(mod)
            n4 += 1
    assert n4 > 0 and not isinstance(base.lm_head, bitsandbytes.nn.Linear4bit)

    lcfg = LoraConfig(lora_dropout=0.0, init_lora_weights="gaussian", **case["lora"])
    model = get_peft_model(base, lcfg)
    dora_init = {
        saved_key(n): p.detach().float().clone().contiguous() for n, p in model.named_parameters() if "lora_magnitude" in n
    }
    if dora_init:
        save_file(dora_init, os.path.join(out_dir, "dora_init.safetensors"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "lora_magnitude_vector" in name:
                p.mul_(1 + 0.1 * torch.randn(p.shape, generator=gen))
    model.train()
    adapter_init = {
        saved_key(n): p.detach().float().clone().contiguous() for n, p in model.named_parameters() if ".lora_" in n
    }
    model.save_pretrained(out_dir)
    os.remove(os.path.join(out_dir, "adapter_model.safetensors"))
    if os.path.exists(os.path.join(out_dir, "README.md")):
        os.remove(os.path.join(out_dir, "README.md"))
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

    # float64 from the float32 values: floating parameters widened (the packed uint8 weights stay as they are)
    model.double()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n, _ in trainable)
    decay_names = set(transformers.Trainer.get_decay_parameter_names(None, model))
    groups = [
        dict(params=[p for n, p in trainable if n in decay_names], weight_decay=TRAIN["weight_decay"]),
        dict(params=[p for n, p in trainable if n not in decay_names], weight_decay=0.0),
    ]
    opt = torch.optim.AdamW(groups, lr=TRAIN["lr"], betas=tuple(TRAIN["betas"]), eps=TRAIN["eps"], foreach=False)
    inputs64 = {k: (v.double() if v.is_floating_point() else v) for k, v in inputs.items()}
    expected = {}
    out = model(**inputs64)
    assert out.logits.dtype == torch.float64 and torch.isfinite(out.logits).all()
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
        "kind": "qtrain",
        "reference": dict(mf.versions(), bitsandbytes=bitsandbytes.__version__),
        "atol": 1e-5,
        "rtol": 1e-4,
        "quantization": {"quant_type": case["quant_type"], "double_quant": case["double_quant"], "blocksize": 64},
        "notes": case["notes"]
        + " Gradients: float32 against a float64 reference on the same dequantized weights, within 1e-4 relative "
        "(plus 1e-5 absolute for near-zero entries). Losses after k AdamW steps: 1e-5 relative.",
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
    args = ap.parse_args()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)
    idefics2_ref.install_original_position_ids()
    for case in CASES:
        print(build_case(case, args.out, args.seed))


if __name__ == "__main__":
    main()
