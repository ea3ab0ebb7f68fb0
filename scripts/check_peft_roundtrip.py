#!/usr/bin/env python3
"""Checks that adapters and merged checkpoints written by the Go side load unchanged in PEFT / transformers.

Usage (what `make peft-check` runs):
    .venv/bin/python scripts/check_peft_roundtrip.py --adapter-bin build/idefics2-adapter \
        --train-bin build/idefics2-train [--work build/peft-check] [--steps 4]

For each case it
  1. trains the tiny embedded model (configs/tiny.yaml) for a few steps with idefics2-train,
  2. exports the run's checkpoint with `idefics2-adapter export` (a PEFT adapter directory) and checks that it
     equals, byte for byte, the adapter the trainer wrote (rank/alpha patterns and kaiming init included),
  3. merges it into the base with `idefics2-adapter merge`, in float32 (sharded at 4 MB) and in bfloat16,
  4. runs `idefics2-adapter logits` on one batch (base + adapter, each merged model),
  5. loads the adapter with PeftModel.from_pretrained on the same base and each merged directory with
     Idefics2ForConditionalGeneration.from_pretrained, runs the same batch in PyTorch (float32, eager
     attention, the original vision position ids) and compares logits with the Go ones.
It also rewrites a PEFT-saved adapter (testdata/fixtures/adapter-dora-patterns) with key variants (no prefix,
adapter-name infix), converts it back with `idefics2-adapter import --out`, and loads the result with PEFT.
Loading is checked strictly: every tensor of our files must land in the PyTorch model with its value, and no
weight of the model may be left missing. Logits are compared where attention_mask is 1; the limit is 1e-4.
Exit status 1 when any check fails.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

import torch
from safetensors.torch import load_file, save_file

import peft
import transformers
from peft import PeftModel
from transformers import Idefics2ForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import idefics2_ref  # noqa: E402

LIMIT = 1e-4

CASES = {
    "lora": [],  # configs/tiny.yaml: LoRA r=8 on text + connector projections, connector in modules_to_save
    "dora": ["lora.use_dora=true", "lora.use_rslora=true", "lora.r=4", "lora.alpha=4",
             "lora.target_names=[q_proj,v_proj,down_proj,fc2]"],
    # export maps rank/alpha patterns and kaiming init (PEFT's init_lora_weights=true) as the trainer does
    "patterns": ["lora.rank_pattern={v_proj: 3}", "lora.alpha_pattern={down_proj: 2.5}", "lora.init=kaiming"],
}


def run(cmd, **kw):
    print("$", " ".join(cmd), flush=True)
    res = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, **kw)
    if res.returncode != 0:
        sys.stdout.write(res.stdout)
        sys.stderr.write(res.stderr)
        raise SystemExit(f"command failed with status {res.returncode}: {' '.join(cmd)}")
    out = res.stdout.strip()
    if out:
        print("  " + out.replace("\n", "\n  "))
    return res


def make_inputs(model_dir, path, seed=11):
    """A batch for the tiny model: two samples, three images of different sizes, right padding."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    image_id = cfg["image_token_id"]
    fake = image_id - 1  # <fake_token_around_image> precedes <image> in the Idefics2 vocabulary
    n_lat = cfg["perceiver_config"]["resampler_n_latents"]
    size = cfg["vision_config"]["image_size"]
    gen = torch.Generator().manual_seed(seed)

    def text(k):
        return torch.randint(3, 31999, (k,), generator=gen).tolist()

    def img():
        return [fake] + [image_id] * n_lat + [fake]

    seqs = [[1] + text(3) + img() + text(2) + img() + text(4), [1] + text(5) + img() + text(3)]
    t = max(len(s) for s in seqs)
    ids = torch.zeros((2, t), dtype=torch.int64)
    att = torch.zeros((2, t), dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        att[i, : len(s)] = 1
    sizes = [[(size, size), (40, 56)], [(48, size)]]
    pix = torch.zeros((2, 2, 3, size, size), dtype=torch.float32)
    mask = torch.zeros((2, 2, size, size), dtype=torch.int64)
    for i, s in enumerate(sizes):
        for j, (h, w) in enumerate(s):
            pix[i, j, :, :h, :w] = torch.rand((3, h, w), generator=gen) * 2 - 1
            mask[i, j, :h, :w] = 1
    inputs = dict(input_ids=ids, attention_mask=att, pixel_values=pix, pixel_attention_mask=mask)
    save_file(inputs, path)
    return inputs


def torch_logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits.float()


def max_diff(a, b, att):
    keep = att.bool()
    return (a[keep] - b[keep]).abs().max().item()


def peft_param_name(key):
    """The PeftModel state-dict name a saved adapter key loads into (adapter name "default")."""
    for kind in (".lora_A.", ".lora_B."):
        if kind in key:
            return key.replace(kind, kind + "default.")
    if key.endswith(".lora_magnitude_vector"):
        return key + ".default.weight"
    return key


def check_peft_load(model, adapter_dir):
    """Every tensor of the adapter file must sit in the PEFT model with its value; no LoRA weight may be left
    at its initial value by a missing key."""
    saved = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    state = model.state_dict()
    covered = set()
    problems = []
    for key, value in saved.items():
        name = peft_param_name(key)
        if name not in state:
            # modules_to_save tensors load into the wrapper's trained copy
            cands = [n for n in state if ".modules_to_save.default." in n and n.replace(".modules_to_save.default.", ".") == key]
            name = cands[0] if cands else None
        if name is None or name not in state:
            problems.append(f"{key}: no such weight in the PEFT model")
            continue
        covered.add(name)
        if not torch.equal(state[name].to(value.dtype), value):
            problems.append(f"{key}: loaded with a different value")
    for name in state:
        if (".lora_" in name or ".modules_to_save.default." in name) and name not in covered:
            problems.append(f"{name}: not in the adapter file")
    return problems


def compare(label, got, want, att, failures):
    d = max_diff(got, want, att)
    ok = d <= LIMIT
    print(f"  {label:<62} max |diff| {d:.3g}  {'ok' if ok else 'FAIL'}")
    if not ok:
        failures.append(f"{label}: {d:.3g}")
    return d


def load_merged(path, dtype, failures):
    model, info = Idefics2ForConditionalGeneration.from_pretrained(
        path, dtype=dtype, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        failures.append(f"{path}: {bad}")
        print(f"  loading {path}: {bad}")
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adapter-bin", default="build/idefics2-adapter")
    ap.add_argument("--train-bin", default="build/idefics2-train")
    ap.add_argument("--work", default="build/peft-check")
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    idefics2_ref.install_original_position_ids()
    print(f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}")

    work = os.path.join(ROOT, args.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    tiny = os.path.join(work, "tiny-model")
    failures = []
    inputs = None
    summary = {}
    for case, extra in CASES.items():
        print(f"\n== {case}")
        sets = [f"model.path={tiny}", f"train.output_dir={work}/run-{case}", f"train.max_steps={args.steps}",
                f"train.save_every={args.steps}", "train.eval_every=0", "train.progress_bar=false"] + extra
        setargs = [a for s in sets for a in ("--set", s)]
        run([args.train_bin, "--config", "configs/tiny.yaml"] + setargs)
        adapter = f"{work}/adapter-{case}"
        run([args.adapter_bin, "export", "--checkpoint", f"{work}/run-{case}", "--config", "configs/tiny.yaml", "--out", adapter] + setargs)
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            with open(os.path.join(adapter, f), "rb") as a, open(f"{work}/run-{case}/adapter/{f}", "rb") as b:
                if a.read() != b.read():
                    failures.append(f"{case}: exported {f} differs from the trainer's")
                    print(f"  exported {f} differs from the one the trainer wrote")
        run([args.adapter_bin, "import", "--base", tiny, "--adapter", adapter])
        merged32, merged16 = f"{work}/merged-{case}-f32", f"{work}/merged-{case}-bf16"
        run([args.adapter_bin, "merge", "--base", tiny, "--adapter", adapter, "--out", merged32, "--dtype", "float32",
             "--max-shard-size", "4MB", "--quiet"])
        run([args.adapter_bin, "merge", "--base", tiny, "--adapter", adapter, "--out", merged16, "--dtype", "bfloat16", "--quiet"])
        if inputs is None:
            inputs = make_inputs(tiny, f"{work}/inputs.safetensors")
        go = {}
        for name, cmd in (("adapter", ["--model", tiny, "--adapter", adapter]), ("merged32", ["--model", merged32]),
                          ("merged16", ["--model", merged16])):
            out = f"{work}/go-logits-{case}-{name}.safetensors"
            run([args.adapter_bin, "logits", *cmd, "--inputs", f"{work}/inputs.safetensors", "--out", out])
            go[name] = load_file(out)["logits"]
        att = inputs["attention_mask"]

        base = Idefics2ForConditionalGeneration.from_pretrained(tiny, dtype=torch.float32, attn_implementation="eager")
        pm = PeftModel.from_pretrained(base, adapter).eval()
        problems = check_peft_load(pm, adapter)
        if problems:
            failures += [f"{adapter}: {p}" for p in problems]
            print("  PEFT load problems:", *problems[:10], sep="\n    ")
        else:
            print(f"  PeftModel.from_pretrained({adapter}): every tensor loaded with its value")
        p_logits = torch_logits(pm, inputs)
        m32 = load_merged(merged32, torch.float32, failures)
        m32_logits = torch_logits(m32, inputs)
        m16 = load_merged(merged16, torch.float32, failures)
        m16_logits = torch_logits(m16, inputs)
        n_shards = len([f for f in os.listdir(merged32) if f.endswith(".safetensors")])
        summary[case] = {
            "peft_vs_go_adapter": compare("PEFT (our adapter) vs Go base + adapter", p_logits, go["adapter"], att, failures),
            "hf_merged_vs_go_adapter": compare(f"HF from_pretrained(merged f32, {n_shards} shards) vs Go base + adapter", m32_logits, go["adapter"], att, failures),
            "hf_merged_vs_go_merged": compare("HF merged f32 vs Go merged f32", m32_logits, go["merged32"], att, failures),
            "hf_merged_vs_peft": compare("HF merged f32 vs PEFT (our adapter)", m32_logits, p_logits, att, failures),
            "hf_merged_bf16_vs_go_merged_bf16": compare("HF merged bf16 vs Go merged bf16 (both computing in f32)", m16_logits, go["merged16"], att, failures),
        }
        print(f"  (bf16 rounding of the merged weights moves the logits by {max_diff(m16_logits, m32_logits, att):.3g})")

    # A PEFT-saved adapter with key variants, converted back by `idefics2-adapter import --out`.
    print("\n== import key variants")
    fx = os.path.join(ROOT, "testdata/fixtures/adapter-dora-patterns")
    variant = f"{work}/variant-adapter"
    os.makedirs(variant)
    shutil.copy(os.path.join(fx, "adapter", "adapter_config.json"), variant)
    saved = load_file(os.path.join(fx, "adapter", "adapter_model.safetensors"))
    save_file({peft_param_name(k).removeprefix("base_model.model."): v for k, v in saved.items()},
              os.path.join(variant, "adapter_model.safetensors"), metadata={"format": "pt"})
    canon = f"{work}/variant-canonical"
    run([args.adapter_bin, "import", "--base", fx, "--adapter", variant, "--out", canon])
    fx_inputs = load_file(os.path.join(fx, "inputs.safetensors"))
    fx_inputs.pop("labels", None)
    want = load_file(os.path.join(fx, "expected.safetensors"))["logits"]
    base = Idefics2ForConditionalGeneration.from_pretrained(fx, dtype=torch.float32, attn_implementation="eager")
    pm = PeftModel.from_pretrained(base, canon).eval()
    problems = check_peft_load(pm, canon)
    if problems:
        failures += [f"{canon}: {p}" for p in problems]
        print("  PEFT load problems:", *problems[:10], sep="\n    ")
    summary["import_variants"] = {"peft_vs_fixture": compare(
        "PEFT (converted variant) vs the fixture's PEFT logits", torch_logits(pm, fx_inputs), want, fx_inputs["attention_mask"], failures)}

    with open(os.path.join(work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print()
    if failures:
        print("FAILED:", *failures, sep="\n  ")
        sys.exit(1)
    print(f"peft-check: all comparisons within {LIMIT} ({work}/summary.json)")


if __name__ == "__main__":
    main()
