#!/usr/bin/env python3
"""Writes the `kind=model` reference fixtures (forward pass of Idefics2ForConditionalGeneration).

Usage:
    .venv/bin/python scripts/make_model_fixtures.py --out testdata/fixtures [--seed N] [--only NAME]

Every case is a directory <out>/<name>/ holding, as defined in the fixture contract
(/work/shared/spec/fixtures.md, "kind = model"):
    meta.json, config.json, model.safetensors (+ generation_config.json, as save_pretrained writes it),
    inputs.safetensors, expected.safetensors.

The model is a tiny Idefics2 built from a config with random weights. The weights are re-drawn after
construction (norm weights around 1 with noise, non-zero biases, random latents) so that a mistake in any
parameter's use changes the outputs. Everything is float32 on CPU with one thread, so re-running the script
reproduces the committed files byte for byte.

Two behaviours of the installed transformers are pinned to the trained (original) behaviour:
  * vision position ids: the original fractional-bucket algorithm (float32 arange of fractions + bucketize),
    installed as a replacement for Idefics2VisionEmbeddings.forward (scripts/idefics2_ref.py);
  * perceiver RMSNorm epsilon: written explicitly into config.json (perceiver_config.rms_norm_eps).
"""

import os

import cpu_pin  # noqa: F401  (before torch: pins the CPU code paths)

import argparse
import json
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import save_file

import PIL
import peft
import transformers
from transformers import Idefics2Config, Idefics2ForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check_fixture  # noqa: E402  (same directory)
import idefics2_ref  # noqa: E402

# Token ids of the tiny vocabulary (mirrors the layout of the real one: the special tokens sit at the end).
PAD, BOS, EOS = 0, 1, 2
FAKE = 97  # <fake_token_around_image>
IMAGE = 98  # <image>  (image_token_id)
EOU = 99  # <end_of_utterance>
VOCAB = 100
TEXT_LO, TEXT_HI = 3, 97  # ordinary text tokens are drawn from [TEXT_LO, TEXT_HI)

PATCH = 4
IMAGE_SIZE = 32  # -> 8 patches per side, 64 position embeddings
N_LATENTS = 3

ATOL = 1e-4
RTOL = 1e-4


def tiny_config(vision_overrides=None):
    """The tiny configuration shared by all cases (all fields that matter are explicit)."""
    vision = dict(
        hidden_size=24,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_channels=3,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
        attention_dropout=0.0,
    )
    vision.update(vision_overrides or {})
    return Idefics2Config(
        image_token_id=IMAGE,
        tie_word_embeddings=False,
        use_cache=False,
        vision_config=vision,
        perceiver_config=dict(
            hidden_act="silu",
            hidden_size=32,
            rms_norm_eps=1e-5,
            resampler_n_latents=N_LATENTS,
            resampler_depth=2,
            resampler_n_heads=4,
            resampler_head_dim=6,
            num_key_value_heads=2,
            attention_dropout=0.0,
        ),
        text_config=dict(
            model_type="mistral",
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            hidden_act="silu",
            max_position_embeddings=256,
            rms_norm_eps=1e-6,
            rope_theta=10000.0,
            sliding_window=16,
            attention_dropout=0.0,
            pad_token_id=PAD,
            bos_token_id=BOS,
            eos_token_id=EOS,
            tie_word_embeddings=False,
        ),
    )


# ---------------------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------------------


def reinit_weights(model, gen):
    """Draws every parameter again so that all of them influence the outputs visibly."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = tuple(p.shape)
            if name.endswith("latents"):
                # small on purpose: mean(latents^2) ~ 1e-4 makes the perceiver RMSNorm epsilon (1e-5 vs 1e-6)
                # change the outputs by a few percent, so a wrong epsilon is caught
                v = 0.01 * torch.randn(shape, generator=gen)
            elif "embed_tokens" in name:
                v = torch.randn(shape, generator=gen)
            elif "position_embedding" in name:
                v = 0.5 * torch.randn(shape, generator=gen)
            elif p.dim() == 1 and "norm" in name and name.endswith("weight"):
                v = 1.0 + 0.15 * torch.randn(shape, generator=gen)
            elif p.dim() == 1 and name.endswith("bias"):
                v = 0.1 * torch.randn(shape, generator=gen)
            elif p.dim() >= 2:
                fan_in = int(np.prod(shape[1:]))
                v = torch.randn(shape, generator=gen) / np.sqrt(fan_in)
            else:
                raise AssertionError(f"no init rule for {name} {shape}")
            p.copy_(v.to(p.dtype))


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------


def make_pixels(samples, gen):
    """samples: per sample a list of (h, w) image sizes. Returns pixel_values [B,N,3,H,W] (zero padded to
    the batch maximum, bottom/right) and pixel_attention_mask [B,N,H,W] (1 on the real region)."""
    b = len(samples)
    n = max(len(s) for s in samples)
    sizes = [hw for s in samples for hw in s]
    hmax = max(h for h, _ in sizes)
    wmax = max(w for _, w in sizes)
    pix = torch.zeros((b, n, 3, hmax, wmax), dtype=torch.float32)
    mask = torch.zeros((b, n, hmax, wmax), dtype=torch.int64)
    for i, s in enumerate(samples):
        for j, (h, w) in enumerate(s):
            pix[i, j, :, :h, :w] = torch.rand((3, h, w), generator=gen) * 2 - 1
            mask[i, j, :h, :w] = 1
    return pix, mask


def text(gen, k):
    return torch.randint(TEXT_LO, TEXT_HI, (k,), generator=gen).tolist()


def image_block():
    return [FAKE] + [IMAGE] * N_LATENTS + [FAKE]


def make_sequence(gen, layout):
    """layout: list of ints (k text tokens) and the string "img" (one image block). Starts with BOS."""
    ids = [BOS]
    for item in layout:
        ids += image_block() if item == "img" else text(gen, item)
    return ids


def pad_batch(seqs, sides):
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), PAD, dtype=torch.int64)
    att = torch.zeros((len(seqs), t), dtype=torch.int64)
    for i, (s, side) in enumerate(zip(seqs, sides)):
        k = len(s)
        if side == "left":
            ids[i, t - k :] = torch.tensor(s)
            att[i, t - k :] = 1
        else:
            ids[i, :k] = torch.tensor(s)
            att[i, :k] = 1
    return ids, att


def make_labels(ids, att):
    labels = ids.clone()
    labels[att == 0] = -100
    labels[ids == IMAGE] = -100
    return labels


# ---------------------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------------------

CASES = [
    dict(
        name="model-tiny-basic",
        notes="2 samples, 1 image each, both 16x16 pixels (4x4 patches, no padding pixels, no vision mask); "
        "no text padding; sequence shorter than the sliding window.",
        images=[[(16, 16)], [(16, 16)]],
        layouts=[[2, "img", 4], [3, "img", 3]],
        sides=["right", "right"],
    ),
    dict(
        name="model-multi-image-sizes",
        notes="3 images of different sizes per sample, zero padded bottom/right to the batch maximum 22x21 with "
        "pixel_attention_mask marking the real region. Patch grid of the canvas is 5x5 (the last 2 pixel rows "
        "and 1 column of the canvas are discarded). Sizes: 16x16 (4x4), 14x18 (3x4 valid patches: the partial "
        "patch row/column count as padding), 8x20 (2x5), 22x12 (5x3 + leftover rows), 10x21 (2x5 + leftover), "
        "4x4 (1x1). Vision and perceiver attention masks are active.",
        images=[[(16, 16), (14, 18), (8, 20)], [(22, 12), (10, 21), (4, 4)]],
        layouts=[["img", 1, "img", 2, "img", 3], [1, "img", "img", 3, "img", 2]],
        sides=["right", "right"],
    ),
    dict(
        name="model-missing-images",
        notes="Sample 0 has 2 images (16x16 and a full 32x32 = 8x8 grid), sample 1 has 1 image (12x28 = 3x7) "
        "and an all-zero padding image slot (pixel_attention_mask all 0). Padding images are dropped before the "
        "vision tower: M = 3 real images, in sample-major order.",
        images=[[(16, 16), (32, 32)], [(12, 28)]],
        layouts=[[1, "img", 1, "img", 2], [2, "img", 4, 3]],
        sides=["right", "right"],
    ),
    dict(
        name="model-nonsquare-grid",
        notes="Non-square patch grid: both images 8x20 pixels = 2x5 patches, same size, so the patch mask is "
        "all true (no vision/perceiver attention mask).",
        images=[[(8, 20)], [(8, 20)]],
        layouts=[[3, "img", 3], [1, "img", 5]],
        sides=["right", "right"],
    ),
    dict(
        name="model-padding-left-right",
        notes="Sample 0 is left padded, sample 1 right padded (pad id 0, attention_mask 0). Labels are -100 on "
        "pads and image tokens. No position_ids are passed, so HF uses 0..T-1 for every row (also for the "
        "left-padded one); the tensor is stored as the extra key position_ids in inputs.safetensors. Logits "
        "at pad positions are not meaningful (fully masked rows) and are not to be compared.",
        images=[[(16, 12)], [(12, 16)]],
        layouts=[[2, "img", 2], [4, "img", 5]],
        sides=["left", "right"],
        padded=True,
    ),
    dict(
        name="model-long-sliding-window",
        notes="Sequences of 40 tokens with sliding_window 16 (a query sees itself and the 15 previous keys); "
        "sample 1 is left padded by 5 tokens. Two images per sample, the second far from the first.",
        images=[[(16, 16), (12, 8)], [(8, 16), (16, 8)]],
        layouts=[[3, "img", 20, "img", 6], [2, "img", 14, "img", 7]],
        sides=["right", "left"],
        padded=True,
    ),
    dict(
        name="model-bf16-weights",
        notes="Weights stored as bfloat16 (save_pretrained after model.to(torch.bfloat16)); config dtype is "
        "bfloat16. The expected outputs were computed in float32 from these bf16 weights (loaded with "
        "from_pretrained(dtype=float32)), so the Go side must upcast the weights to float32 on load.",
        images=[[(12, 16)], [(16, 12)]],
        layouts=[[2, "img", 3], [3, "img", 2]],
        sides=["right", "right"],
        weights_dtype="bfloat16",
    ),
    dict(
        name="model-pos-buckets-s70",
        notes="Position-bucket pinning at the real table size: vision image_size 70 with patch_size 1 gives the "
        "8b's 70 patches per side (4900 position embeddings), vision hidden 4 / 2 heads / intermediate 8. "
        "Images of 49x58, 50x50 and 25x55 pixels (= patches) hit every n where the original float32 "
        "arange+bucketize differs from floor(70*i/n) (n = 25, 49, 50, 55, 58) and where it differs from the "
        "installed transformers' i*(1/n) variant (n = 49, 58). Sample 1 has a padding image slot.",
        images=[[(49, 58), (50, 50)], [(25, 55)]],
        layouts=[[1, "img", 1, "img", 3], [2, "img", 5, 3]],
        sides=["right", "right"],
        vision=dict(image_size=70, patch_size=1, hidden_size=4, num_attention_heads=2, intermediate_size=8),
    ),
]

COMMON_NOTES = (
    "Tiny random Idefics2 (weights re-drawn: norm weights 1+0.15*N(0,1), biases 0.1*N(0,1), linear "
    "N(0,1/fan_in), token embeddings N(0,1), vision position embeddings 0.5*N(0,1), perceiver latents "
    "0.01*N(0,1) so that the perceiver RMSNorm epsilon visibly matters), eager attention, float32 compute, "
    "eval mode, one CPU thread. "
    "Vision position ids use the original algorithm (transformers <= 4.54.1: float32 arange of fractions + "
    "bucketize right=True against arange(1/S,1,1/S)); the script installs its own implementation of it as "
    "Idefics2VisionEmbeddings.forward because the installed transformers computes the fractions as i*(1/n) "
    "and clamps them (for 8 patches per side both give floor(8*i/n); they differ at 70 per side, see the case "
    "model-pos-buckets-s70). Perceiver rms_norm_eps is written explicitly (1e-5, the trained value; text eps is 1e-6): the Go side "
    "must read perceiver_config.rms_norm_eps, using 1e-6 changes image_hidden_states by far more than the "
    "tolerance. "
    "Loss is the current HF causal-LM loss: labels shifted left by one, cross-entropy with ignore_index -100, "
    "mean over non-ignored targets, no attention-mask filtering. Tolerances 1e-4 abs/rel: activations are "
    "O(1) and every reduction is short, so float32 results of a different summation order differ by ~1e-6; "
    "1e-4 leaves room for the Go backend's own kernels while still catching any real mistake."
)


def versions():
    return {
        "transformers": transformers.__version__,
        "torch": torch.__version__.split("+")[0],
        "peft": peft.__version__,
        "pillow": PIL.__version__,
    }


def own_loss(logits, labels):
    """Independent restatement of the causal-LM loss, used as a cross-check."""
    lg = logits[:, :-1, :].reshape(-1, logits.shape[-1]).double()
    tg = labels[:, 1:].reshape(-1)
    keep = tg != -100
    logp = torch.log_softmax(lg[keep], dim=-1)
    return -logp[torch.arange(int(keep.sum())), tg[keep]].mean()


def build_case(case, out_root, seed):
    index = [c["name"] for c in CASES].index(case["name"])
    case_seed = seed * 1000 + index
    gen = torch.Generator().manual_seed(case_seed)
    torch.manual_seed(case_seed)

    weights_dtype = case.get("weights_dtype", "float32")
    config = tiny_config(case.get("vision"))
    config._attn_implementation = "eager"
    model = Idefics2ForConditionalGeneration(config)
    reinit_weights(model, gen)
    model.eval()

    # inputs
    pixel_values, pixel_attention_mask = make_pixels(case["images"], gen)
    seqs = [make_sequence(gen, layout) for layout in case["layouts"]]
    input_ids, attention_mask = pad_batch(seqs, case["sides"])
    labels = make_labels(input_ids, attention_mask)
    if bool((attention_mask == 0).any()) != case.get("padded", False):
        raise AssertionError(f"{case['name']}: text padding present={bool((attention_mask == 0).any())}")
    n_real = sum(len(s) for s in case["images"])
    assert int((input_ids == IMAGE).sum()) == n_real * N_LATENTS
    b, t = input_ids.shape
    inputs = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pixel_values": pixel_values,
        "pixel_attention_mask": pixel_attention_mask,
        "labels": labels,
        "position_ids": torch.arange(t, dtype=torch.int64)[None, :].expand(b, t).contiguous(),
    }

    # files
    out_dir = os.path.join(out_root, case["name"])
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    if weights_dtype == "bfloat16":
        model.to(torch.bfloat16)
        model.config.dtype = torch.bfloat16
    model.save_pretrained(out_dir, safe_serialization=True)
    del model

    # the reference run uses the files just written, loaded in float32
    ref = Idefics2ForConditionalGeneration.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager")
    ref.eval()
    expected = idefics2_ref.run_reference(ref, inputs)

    check = own_loss(expected["logits"], labels)
    if abs(float(check) - float(expected["loss"])) > 1e-5:
        raise AssertionError(f"loss cross-check failed: {float(check)} vs {float(expected['loss'])}")

    save_file(inputs, os.path.join(out_dir, "inputs.safetensors"))
    save_file(expected, os.path.join(out_dir, "expected.safetensors"))

    b, n, _, h, w = pixel_values.shape
    meta = {
        "kind": "model",
        "reference": versions(),
        "atol": ATOL,
        "rtol": RTOL,
        "notes": case["notes"] + " " + COMMON_NOTES,
        "seed": case_seed,
        "shapes": {
            "B": b,
            "N": n,
            "H": h,
            "W": w,
            "T": t,
            "M": n_real,
            "P": int(expected["vision_last_hidden_state"].shape[1]),
        },
        "weights_dtype": weights_dtype,
    }
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return out_dir


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="fixture root directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="write only the case with this name")
    ap.add_argument(
        "--bucket-table",
        default=os.path.join(HERE, "..", "testdata", "spec", "idefics2_pos_bucket_table.json"),
        help="position bucket table to verify the position-id implementation against (skipped if absent)",
    )
    args = ap.parse_args()

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    idefics2_ref.install_original_position_ids()
    idefics2_ref.verify_known_exceptions()
    if os.path.exists(args.bucket_table):
        idefics2_ref.verify_bucket_table(args.bucket_table)
        print(f"position buckets match {os.path.normpath(args.bucket_table)} for S=70, n=1..70")

    cases = [c for c in CASES if args.only is None or c["name"] == args.only]
    if not cases:
        sys.exit(f"no case named {args.only!r}; known: {', '.join(c['name'] for c in CASES)}")
    os.makedirs(args.out, exist_ok=True)
    for case in cases:
        d = build_case(case, args.out, args.seed)
        max_diff = check_fixture.check(d)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(f"{case['name']}: {size} bytes, reload check max |diff| = {max_diff:.3g}")


if __name__ == "__main__":
    main()
