"""Shared helpers of the fixture and benchmark scripts: the pinned reference behaviour, the reference forward run
and the benchmarks' small config.

Importing this module changes nothing; call install_original_position_ids() before running a model.
"""

import json

import torch
from transformers import Idefics2Config
from transformers.models.idefics2 import modeling_idefics2


# ---------------------------------------------------------------------------------------------------------
# The benchmarks' small config (scripts/bench_generate.py, scripts/bench_serve.py).
# ---------------------------------------------------------------------------------------------------------


def small_config():
    """A small Idefics2 (about 56M parameters): real vocabulary and token ids, 64 latents, 224-pixel images."""
    return Idefics2Config(
        image_token_id=32001,
        tie_word_embeddings=False,
        vision_config=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                           num_channels=3, image_size=224, patch_size=14, hidden_act="gelu_pytorch_tanh",
                           layer_norm_eps=1e-6),
        perceiver_config=dict(hidden_act="silu", hidden_size=512, rms_norm_eps=1e-5, resampler_n_latents=64,
                              resampler_depth=2, resampler_n_heads=8, resampler_head_dim=64, num_key_value_heads=4),
        text_config=dict(model_type="mistral", vocab_size=32003, hidden_size=512, intermediate_size=1408,
                         num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4, head_dim=64,
                         hidden_act="silu", max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
                         sliding_window=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         tie_word_embeddings=False),
    )


# ---------------------------------------------------------------------------------------------------------
# Vision position ids: the original algorithm (transformers <= 4.54.1).
#
# Per image: nh / nw = number of valid patches in the first column / first row of its patch mask.
# Boundaries are the float32 values arange(1/S, 1, 1/S) (S = patches per side of the position table).
# Fractional coordinates are the float32 values arange(0, 1 - 1e-6, 1/n), the step 1/n being computed in
# float32; the bucket of a coordinate is the number of boundaries <= it (bucketize, right=True).
# Valid patch (i, j) gets bucket_h(i) * S + bucket_w(j), in row-major order over the valid top-left
# rectangle; padding patches get 0.
#
# The installed transformers instead computes the fractions as i * (1/n) (a float32 multiplication) and
# clamps them at 1 - 1e-6; for some (S, n) that moves a coordinate across a boundary.
# ---------------------------------------------------------------------------------------------------------


def bucket_boundaries(side):
    return torch.arange(1 / side, 1.0, 1 / side, dtype=torch.float32)


def fractional_buckets(n, boundaries):
    """Bucket index of every coordinate 0..n-1 of an axis with n valid patches (original algorithm)."""
    step = torch.tensor(1.0, dtype=torch.float32) / torch.tensor(float(n), dtype=torch.float32)
    frac = torch.arange(0, 1 - 1e-6, step.item(), dtype=torch.float32)
    if frac.numel() != n:
        raise AssertionError(f"fraction grid for n={n} has {frac.numel()} values")
    return torch.bucketize(frac, boundaries, right=True)


def installed_buckets(n, boundaries):
    """Bucket indices as the installed transformers (5.x) computes them; for comparison only."""
    step = torch.tensor(1.0, dtype=torch.float32) / torch.tensor(float(n), dtype=torch.float32)
    frac = torch.arange(n, dtype=torch.float32) * step
    frac = torch.clamp(frac, max=1.0 - 1e-6)
    return torch.bucketize(frac, boundaries, right=True)


def original_position_ids(patch_attention_mask, side):
    """patch_attention_mask: bool [M, gh, gw] -> int64 position ids [M, gh*gw]."""
    m, gh, gw = patch_attention_mask.shape
    boundaries = bucket_boundaries(side)
    out = torch.zeros((m, gh * gw), dtype=torch.int64)
    for k in range(m):
        mask = patch_attention_mask[k]
        nh = int(mask[:, 0].sum())
        nw = int(mask[0, :].sum())
        if int(mask.sum()) != nh * nw:
            raise AssertionError("valid patches do not form a top-left rectangle")
        if nh == 0:
            continue
        rows = fractional_buckets(nh, boundaries)
        cols = fractional_buckets(nw, boundaries)
        ids = (rows[:, None] * side + cols[None, :]).reshape(-1)
        out[k, mask.reshape(-1)] = ids
    return out


def _embeddings_forward(self, pixel_values, patch_attention_mask):
    """Forward of Idefics2VisionEmbeddings with the original position ids."""
    patches = self.patch_embedding(pixel_values)  # [M, D, gh, gw]
    embeddings = patches.flatten(2).transpose(1, 2)  # [M, gh*gw, D], row-major over the patch grid
    position_ids = original_position_ids(patch_attention_mask.to(torch.bool).cpu(), self.num_patches_per_side)
    return embeddings + self.position_embedding(position_ids.to(embeddings.device))


def install_original_position_ids():
    modeling_idefics2.Idefics2VisionEmbeddings.forward = _embeddings_forward


def verify_bucket_table(path, side=70):
    """Checks fractional_buckets against a JSON table {"n": [bucket of 0..n-1]} for n = 1..side."""
    with open(path) as f:
        table = json.load(f)
    boundaries = bucket_boundaries(side)
    for n in range(1, side + 1):
        got = fractional_buckets(n, boundaries).tolist()
        if got != table[str(n)]:
            raise AssertionError(f"position bucket table mismatch for n={n}: {got} vs {table[str(n)]}")


# For 70 patches per side the original buckets equal floor(70*i/n) except at these (n: [(i, bucket)]), where
# i/n lands on a boundary and float32 rounding puts it one bucket lower.
S70_EXCEPTIONS = {
    25: [(5, 13), (10, 27), (15, 41), (20, 55)],
    49: [(7, 9), (14, 19), (35, 49), (42, 59)],
    50: [(5, 6), (10, 13), (15, 20), (20, 27), (30, 41), (40, 55)],
    55: [(11, 13), (22, 27), (33, 41), (44, 55)],
    58: [(29, 34)],
}


def verify_known_exceptions():
    """Self-contained check of fractional_buckets for 70 patches per side (no table file needed)."""
    boundaries = bucket_boundaries(70)
    for n in range(1, 71):
        want = [70 * i // n for i in range(n)]
        for i, b in S70_EXCEPTIONS.get(n, []):
            want[i] = b
        got = fractional_buckets(n, boundaries).tolist()
        if got != want:
            raise AssertionError(f"position buckets for n={n}: {got} vs {want}")


# ---------------------------------------------------------------------------------------------------------
# Reference forward run
# ---------------------------------------------------------------------------------------------------------


def run_reference(model, inputs):
    """Forward pass of Idefics2ForConditionalGeneration; returns the tensors of expected.safetensors."""
    captured = {}

    def vision_hook(_module, _args, output):
        captured["vision"] = output.last_hidden_state.detach().clone()

    def connector_hook(_module, _args, output):
        captured["connector"] = output.detach().clone()

    h1 = model.model.vision_model.register_forward_hook(vision_hook)
    h2 = model.model.connector.register_forward_hook(connector_hook)
    try:
        with torch.no_grad():
            out = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                pixel_values=inputs["pixel_values"],
                pixel_attention_mask=inputs["pixel_attention_mask"],
                labels=inputs["labels"],
                use_cache=False,
            )
    finally:
        h1.remove()
        h2.remove()
    return {
        "vision_last_hidden_state": captured["vision"].float().contiguous(),
        "image_hidden_states": captured["connector"].float().contiguous(),
        "logits": out.logits.float().contiguous(),
        "loss": out.loss.float().reshape(()).contiguous(),
    }
