#!/usr/bin/env python3
"""Generation speed of HF transformers on this machine, to put next to the Go benchmark
(model/generate_bench_test.go, BenchmarkGenerate): prefill milliseconds and decode tokens per second of a
random Idefics2 of a given size, greedy, batch 1, one image.

Usage:
    .venv/bin/python scripts/bench_generate.py --config tiny|small --out DIR [--new 32] [--threads 2]
    IDEFICS2_BENCH_DIRS=DIR go test ./model/ -run '^$' -bench BenchmarkGenerate -benchtime 1x

It writes DIR/config.json + model.safetensors (float32), DIR/inputs.safetensors (the prompt and image both
sides use) and DIR/bench_hf.json with the HF numbers; the Go benchmark reads them and prints the ratio.

Prefill = wall time of generate(max_new_tokens=1): vision tower, connector, the prompt through the decoder and
the first token. Decode = (time of generate with N+1 new tokens - prefill) / N, with min_new_tokens so that
every run decodes N tokens. Each number is the median of --repeats runs after one warm-up. Attention is
HF's default (sdpa), float32, torch.set_num_threads(--threads).
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
from safetensors.torch import save_file

import transformers
from transformers import Idefics2ForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import idefics2_ref  # noqa: E402
import make_model_fixtures as mm  # noqa: E402


def inputs_for(config, gen, side):
    latents = config.perceiver_config.resampler_n_latents
    fake, image = (mm.FAKE, mm.IMAGE) if config.text_config.vocab_size == mm.VOCAB else (32000, 32001)
    hi = min(config.text_config.vocab_size, 32000) if fake == 32000 else mm.TEXT_HI
    text = lambda k: torch.randint(3, hi, (k,), generator=gen).tolist()  # noqa: E731
    ids = [1] + text(10) + [fake] + [image] * latents + [fake] + text(10)
    input_ids = torch.tensor([ids], dtype=torch.int64)
    pixel_values = torch.rand((1, 1, 3, side, side), generator=gen) * 2 - 1
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": pixel_values,
        "pixel_attention_mask": torch.ones((1, 1, side, side), dtype=torch.int64),
    }


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=["tiny", "small"], default="tiny")
    ap.add_argument("--out", required=True)
    ap.add_argument("--new", type=int, default=32, help="decoded tokens measured")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    idefics2_ref.install_original_position_ids()
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if args.config == "tiny":
        config, side = mm.tiny_config(), 32
    else:
        config, side = idefics2_ref.small_config(), 224
    model = Idefics2ForConditionalGeneration(config)
    mm.reinit_weights(model, gen)
    model.eval()
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    inputs = inputs_for(config, gen, side)
    save_file(inputs, os.path.join(args.out, "inputs.safetensors"))
    params = sum(p.numel() for p in model.parameters())

    kw = dict(do_sample=False, pad_token_id=0)  # min_new_tokens keeps eos away: every run decodes n tokens

    def run(n):
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, **kw)
        assert out.shape[1] == inputs["input_ids"].shape[1] + n

    prefill = timed(lambda: run(1), args.repeats)
    full = timed(lambda: run(args.new + 1), args.repeats)
    res = {
        "config": args.config,
        "parameters": params,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "image": [side, side],
        "new_tokens": args.new,
        "threads": args.threads,
        "prefill_ms": prefill * 1e3,
        "decode_tokens_per_s": args.new / (full - prefill),
        "transformers": transformers.__version__,
        "torch": torch.__version__.split("+")[0],
        "attention": model.config._attn_implementation,
    }
    with open(os.path.join(args.out, "bench_hf.json"), "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
