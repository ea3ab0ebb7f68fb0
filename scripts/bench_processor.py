#!/usr/bin/env python3
"""Images/s of HF's Idefics2ImageProcessorPil and of data/'s Go image processor on the same
images, on one core, in the same run; prints a table and the ratio.

The machines this runs on are often shared, so the rate is computed from the process's CPU time
(user+system: the work itself, not the neighbours), best of --rounds rounds, the same way on both
sides; wall-clock rates are printed too. The work measured on both sides starts from a decoded RGB image and ends with the padded
float32 pixel_values and pixel_attention_mask of a one-image batch: split (when on), resize,
rescale, normalize, pad. Decoding is measured separately (Pillow vs data.DecodeImage).

Usage: scripts/bench_processor.py [--iters 10] [--rounds 5]   (run from the repository root; needs go)
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import io
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
IMAGES = [
    "testdata/pillow/decode/hubble_deep_field.jpg",
    "testdata/fixtures/processor-docpage-split-train/page_text.png",
]


def best_rate(fn, iters, rounds):
    """(best images per CPU second, best images per wall second) over the rounds."""
    cpu = wall = 0.0
    for _ in range(rounds):
        c, t = time.process_time(), time.perf_counter()
        for _ in range(iters):
            fn()
        cpu = max(cpu, iters / (time.process_time() - c))
        wall = max(wall, iters / (time.perf_counter() - t))
    return cpu, wall


def hf_rates(iters, rounds):
    from PIL import Image
    from transformers.image_utils import load_image
    from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil

    rates = {}
    for path in IMAGES:
        raw = open(os.path.join(ROOT, path), "rb").read()
        name = os.path.basename(path)
        img = load_image(Image.open(io.BytesIO(raw)))
        for split in (False, True):
            ip = Idefics2ImageProcessorPil(do_image_splitting=split)
            ip([[img]], return_tensors="np")  # warm-up
            rates[(name, "split=on" if split else "split=off")] = best_rate(
                lambda: ip([[img]], return_tensors="np"), iters, rounds)
        rates[(name, "decode")] = best_rate(lambda: load_image(Image.open(io.BytesIO(raw))), iters, rounds)
    return rates


def go_rates(iters, rounds):
    env = dict(os.environ, CGO_ENABLED="1", CGO_LDFLAGS="-L" + os.path.join(ROOT, "build", "tokenizers"))
    out = subprocess.run(["go", "test", "./data", "-run", "^$", "-bench", "ImageProcessor", "-benchtime",
                          f"{iters}x", "-count", str(rounds), "-cpu", "1"], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stdout + out.stderr)
    rates = {}
    for line in out.stdout.splitlines():
        m = re.match(r"BenchmarkImageProcessor/([^/\s]+)/(\S+?)(?:#\d+)?\s", line)
        if m:
            metrics = {unit: float(v) for v, unit in re.findall(r"([\d.]+) (images/\S+)", line)}
            key = (m.group(1), m.group(2))
            c, w = rates.get(key, (0.0, 0.0))
            rates[key] = (max(c, metrics["images/cpu-s"]), max(w, metrics["images/s"]))
    return rates


def main():
    # One core for both sides (inherited by the go subprocess).
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import transformers
    hf = hf_rates(args.iters, args.rounds)
    go = go_rates(args.iters, args.rounds)
    print(f"one core; best of {args.rounds} rounds of {args.iters} iterations; HF = transformers {transformers.__version__} "
          f"Idefics2ImageProcessorPil (decode: Pillow via load_image); Go = data (decode: data.DecodeImage)")
    print(f"{'image':24} {'work':10} {'HF img/cpu-s':>13} {'Go img/cpu-s':>13} {'Go/HF':>6}   "
          f"{'HF img/s':>9} {'Go img/s':>9} {'Go/HF':>6}")
    nan = (float("nan"), float("nan"))
    for key in hf:
        (hc, hw), (gc, gw) = hf[key], go.get(key, nan)
        print(f"{key[0]:24} {key[1]:10} {hc:13.2f} {gc:13.2f} {gc / hc:6.2f}   {hw:9.2f} {gw:9.2f} {gw / hw:6.2f}")


if __name__ == "__main__":
    main()
