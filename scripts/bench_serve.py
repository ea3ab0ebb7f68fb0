"""Load benchmark of idefics2-serve on loopback: at each concurrency level, a fixed number of
streamed chat completions (one image and a question each, greedy, at most --new-tokens new
tokens; a row may end earlier on eos), sent by that many client threads at once. Prints
generated tokens/s, time to first token p50/p99, request latency p50/p99 and the sizes of the
batches the server decoded (bucket upper bound: count), per level. Bounded in count and time:
every level sends --requests requests and gives up after --level-timeout seconds.

    python scripts/bench_serve.py --bin DIR --model runs/tiny-model --tokenizer testdata/tokenizer/idefics2
"""

import argparse
import base64
import concurrent.futures as cf
import io
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import openai
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from check_serve import free_port, small_model_dir, wait_healthy  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def image_url(seed):
    img = Image.new("RGB", (48, 32), (seed * 40 % 256, 100, 200))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def one(client, i, new_tokens):
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url(i)}},
                                             {"type": "text", "text": f"Question number {i}: what is shown?"}]}]
    start = time.perf_counter()
    first, tokens = None, 0
    stream = client.chat.completions.create(model="base", messages=messages, max_tokens=new_tokens, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - start
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return first if first is not None else time.perf_counter() - start, time.perf_counter() - start, tokens


def batch_histogram(base):
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r'idefics2_batch_size_bucket\{le="([^"]+)"\} (\d+)', text)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer", default="")
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--requests", type=int, default=16, help="requests per level")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--level-timeout", type=float, default=300)
    ap.add_argument("--warmup", action="store_true",
                    help="run each level once before measuring it, so that XLA's compiles of its batch shapes are not timed")
    ap.add_argument("--pad-batch", action="store_true", help="start the server with --pad-batch")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="bench-serve-")
    model = small_model_dir(args.model, work)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [os.path.join(args.bin, "idefics2-serve"), "--model", model, "--addr", f"127.0.0.1:{port}", "--name", "base",
           "--max-batch", str(args.max_batch), "--queue-size", str(max(64, args.requests))]
    if args.tokenizer:
        cmd += ["--tokenizer", args.tokenizer]
    if args.pad_batch:
        cmd += ["--pad-batch"]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(base, proc, 300)
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=args.level_timeout)
        one(client, 0, args.new_tokens)  # compiles the shapes of a single request
        print(f"backend {os.environ.get('GOMLX_BACKEND', '(default)')}, {args.requests} requests per level, "
              f"{args.new_tokens} new tokens max, max_batch {args.max_batch}"
              + (", pad_batch" if args.pad_batch else "") + (", warmed up" if args.warmup else ""))
        print(f"{'concurrency':>11} {'tokens/s':>9} {'ttft p50':>9} {'ttft p99':>9} {'lat p50':>8} {'lat p99':>8}  batches (size: count)")
        for level in [int(x) for x in args.levels.split(",")]:
            if args.warmup:
                with cf.ThreadPoolExecutor(level) as ex:
                    cf.wait([ex.submit(one, client, i + 1, args.new_tokens) for i in range(args.requests)],
                            timeout=args.level_timeout)
            before = batch_histogram(base)
            start = time.perf_counter()
            with cf.ThreadPoolExecutor(level) as ex:
                futs = [ex.submit(one, client, i + 1, args.new_tokens) for i in range(args.requests)]
                done, _ = cf.wait(futs, timeout=args.level_timeout)
            wall = time.perf_counter() - start
            res = [f.result() for f in done if f.exception() is None]
            after = batch_histogram(base)
            cum = {k: after[k] - before.get(k, 0) for k in after}
            keys = [k for k in after if k != "+Inf"]
            sizes, prev = {}, 0
            for k in keys:
                if cum[k] - prev:
                    sizes[k] = cum[k] - prev
                prev = cum[k]
            ttft, lat, toks = [r[0] for r in res], [r[1] for r in res], sum(r[2] for r in res)
            print(f"{level:>11} {toks / wall:>9.1f} {pct(ttft, 50):>8.3f}s {pct(ttft, 99):>8.3f}s {pct(lat, 50):>7.3f}s "
                  f"{pct(lat, 99):>7.3f}s  {sizes}" + ("" if len(res) == args.requests else f"  ({args.requests - len(res)} failed or cut)"))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
