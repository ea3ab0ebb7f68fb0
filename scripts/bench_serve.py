"""Load benchmark of idefics2-serve on loopback, next to HF transformers' generate on the same
prompts in the same run.

Ours: at each concurrency level (--levels, default 1,4,16), --requests streamed chat completions
(one image and a question each, greedy, at most --new-tokens new tokens; a row may end earlier on
eos), sent by that many client threads at once. Prints generated tokens/s, time to first token
p50/p99, request latency p50/p99 and the sizes of the batches the server decoded (bucket upper
bound: count), per level.

HF: the same requests (the same image bytes and question, the same chat template, the same
generation_config.json) through Idefics2Processor and generate, greedy, max_new_tokens =
--new-tokens, float32, torch.set_num_threads(--threads): one by one (each request its own
generate call) for level 1, in batches of that size (left padding) for the other levels. Each
request's clock starts before its image is decoded; its first token is the first call of a
logits processor (the prefill is done); a batched request's latency is its batch's wall time.
Tokens/s counts generated tokens up to and including eos over the mode's wall time. Then the
ratios ours/HF per level: concurrency 1 against one by one, 4 against batches of 4, 16 against
batches of 16. The two sides do not overlap: the server is stopped before HF starts.
OMP_WAIT_POLICY is PASSIVE unless set: OpenMP threads that spin while they wait made torch ten
times slower when another process held one of 2 cores.

Greedy answers: every answer of ours, and every batched answer of HF, is compared with HF's
one-by-one answer to the same request (texts, whitespace-stripped); the mismatch counts are
printed.

Models: --size small (default) is a random-weight Idefics2 of about 56M parameters
(idefics2_ref.small_config: real vocabulary, 64 latents, 224-pixel images) that transformers
writes to a temp directory (seeded, safetensors, float32); the images are 224x224, not split.
--size tiny is the model of `make tiny-train` (--model), with 48x32 images (at most 64 pixels).
Both get a generation_config.json (eos 2 and 32002 <end_of_utterance>, pad 0,
<fake_token_around_image> and <image> banned: idefics2-8b's) and a preprocessor_config.json,
which both sides read. The server runs with --tokenizer-compat transformers5, the tokenization
of the installed transformers' processor, so that both sides see the same token ids.

Bounded in count and time: every level and every HF mode runs --requests requests (default 16)
and gives up after --level-timeout seconds (HF: no generate call starts after it, and
generate's max_time cuts the one running; a cut batch counts as failed). --warmup runs each
level once before measuring it, so that XLA's compiles of its batch shapes are not timed, and
HF one batch of each size; HF always makes one untimed call first. With the defaults (small,
16 requests, 16 new tokens) and --warmup, a run takes about a minute on 2 shared cores.

    python scripts/bench_serve.py --bin DIR [--warmup] [--size tiny --model runs/tiny-model]
"""

import argparse
import base64
import concurrent.futures as cf
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

# Before torch loads libgomp: OpenMP threads that spin while they wait slow torch down tenfold when
# another process holds one of the cores (measured on 2 shared cores); an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import openai  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_hf import cpu_name  # noqa: E402
from check_serve import free_port, small_model_dir, wait_healthy  # noqa: E402

# idefics2-8b's generation settings (model.DefaultGenerationConfig on our side).
GENERATION_CONFIG = {"bos_token_id": 1, "eos_token_id": [2, 32002], "pad_token_id": 0,
                     "bad_words_ids": [[32000], [32001]]}
IMAGE_SIZE = {"tiny": (48, 32), "small": (224, 224)}  # width, height of the requests' images
# The tiny model's is check_serve.small_model_dir's (at most 64 pixels).
SMALL_PREPROCESSOR = {"do_image_splitting": False, "size": {"longest_edge": 224, "shortest_edge": 112}}
COLUMNS = f"{'tokens/s':>9} {'ttft p50':>9} {'ttft p99':>9} {'lat p50':>8} {'lat p99':>8}"


# ---- requests ----------------------------------------------------------------------------------


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def image_png(i, size):
    """PNG bytes of request i's image: a background and a rectangle whose color and place vary with i."""
    w, h = size
    img = Image.new("RGB", size, (i * 40 % 256, 100, 200))
    x, y = (i * 7) % (w // 2), (i * 5) % (h // 2)
    ImageDraw.Draw(img).rectangle([x, y, x + w // 3, y + h // 3], fill=(250 - i * 13 % 200, i * 29 % 256, 30))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def make_requests(n, size):
    return [(image_png(i, size), f"Question number {i}: what is shown?") for i in range(1, n + 1)]


# ---- models ------------------------------------------------------------------------------------


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def small_model(work, seed):
    """A random-weight small Idefics2 in work/model, written by transformers."""
    import torch
    import transformers
    from transformers import Idefics2ForConditionalGeneration

    import idefics2_ref

    transformers.utils.logging.disable_progress_bar()
    d = os.path.join(work, "model")
    torch.manual_seed(seed)
    model = Idefics2ForConditionalGeneration(idefics2_ref.small_config()).to(torch.float32)
    model.save_pretrained(d, safe_serialization=True)
    return d


def model_dir(args, work):
    """The model directory both sides load: config.json, safetensors, generation and preprocessor configs."""
    if args.size == "small":
        d = small_model(work, args.seed)
        write_json(os.path.join(d, "preprocessor_config.json"), SMALL_PREPROCESSOR)
    else:
        d = small_model_dir(args.model, work)  # links the files, adds a preprocessor_config.json if missing
    gc = os.path.join(d, "generation_config.json")
    if args.size == "small" or not os.path.exists(gc):  # save_pretrained's has eos 2 only and no bad words
        write_json(gc, GENERATION_CONFIG)
    return d


# ---- ours: idefics2-serve -----------------------------------------------------------------------


def data_url(png):
    return "data:image/png;base64," + base64.b64encode(png).decode()


def one(client, req, new_tokens):
    """One streamed chat completion: (ttft, latency, completion tokens, text)."""
    png, question = req
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(png)}},
                                             {"type": "text", "text": question}]}]
    start = time.perf_counter()
    first, tokens, text = None, 0, []
    stream = client.chat.completions.create(model="base", messages=messages, max_tokens=new_tokens, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
            if first is None:
                first = time.perf_counter() - start
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter() - start
    return (first if first is not None else end), end, tokens, "".join(text)


def batch_histogram(base):
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r'idefics2_batch_size_bucket\{le="([^"]+)"\} (\d+)', text)}


def batch_sizes(before, after):
    """The batch-size histogram's increments between two readings: {bucket upper bound: count}."""
    sizes, prev = {}, 0
    for k in [k for k in after if k != "+Inf"]:
        cum = after[k] - before.get(k, 0)
        if cum - prev:
            sizes[k] = cum - prev
        prev = cum
    return sizes


def run_level(client, reqs, level, new_tokens, timeout):
    """The requests sent by `level` threads: (results by request index, wall seconds)."""
    start = time.perf_counter()
    with cf.ThreadPoolExecutor(level) as ex:
        futs = {ex.submit(one, client, r, new_tokens): i for i, r in enumerate(reqs)}
        done, _ = cf.wait(futs, timeout=timeout)
        wall = time.perf_counter() - start
        for f in futs:
            f.cancel()
    return {futs[f]: f.result() for f in done if f.exception() is None}, wall


def bench_ours(args, model, reqs, levels):
    """Runs idefics2-serve and every level; returns {level: (results, wall, batch sizes)}."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [os.path.join(args.bin, "idefics2-serve"), "--model", model, "--addr", f"127.0.0.1:{port}", "--name", "base",
           "--max-batch", str(args.max_batch), "--queue-size", str(max(64, args.requests)),
           "--tokenizer-compat", "transformers5"]
    if args.tokenizer:
        cmd += ["--tokenizer", args.tokenizer]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    out = {}
    try:
        wait_healthy(base, proc, 300)
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=args.level_timeout)
        one(client, reqs[0], args.new_tokens)  # compiles the shapes of a single request
        for level in levels:
            if args.warmup:
                run_level(client, reqs, level, args.new_tokens, args.level_timeout)
            before = batch_histogram(base)
            res, wall = run_level(client, reqs, level, args.new_tokens, args.level_timeout)
            out[level] = (res, wall, batch_sizes(before, batch_histogram(base)))
            print(f"  ours, concurrency {level}: {wall:.1f} s", file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


# ---- HF: transformers generate -----------------------------------------------------------------


def hf_setup(args, model, image_seq_len):
    """The HF model, its processor (the tokenizer directory, the PIL image processor with the model's
    preprocessor_config.json, the chat template) and the first-logits hook class."""
    import torch
    import transformers
    from transformers import AutoTokenizer, Idefics2ForConditionalGeneration, Idefics2Processor, LogitsProcessor
    from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil

    import idefics2_ref
    from make_processor_fixtures import CHAT_TEMPLATE

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    idefics2_ref.install_original_position_ids()  # the vision position ids our side (and idefics2 training) use
    with open(os.path.join(model, "preprocessor_config.json")) as f:
        pc = json.load(f)
    images = Idefics2ImageProcessorPil(do_image_splitting=pc["do_image_splitting"], size=pc["size"])
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    tok.padding_side = "left"
    proc = Idefics2Processor(image_processor=images, tokenizer=tok, image_seq_len=image_seq_len,
                             chat_template=CHAT_TEMPLATE)
    m = Idefics2ForConditionalGeneration.from_pretrained(model, dtype=torch.float32).eval()

    class FirstCall(LogitsProcessor):
        """Records when generate first asks for logits processing: the prefill is done."""

        def __init__(self):
            self.at = None

        def __call__(self, input_ids, scores):
            if self.at is None:
                self.at = time.perf_counter()
            return scores

    return m, proc, FirstCall


def hf_batch(hf, reqs, new_tokens, max_time):
    """One generate call on reqs (left-padded): [(ttft, latency, tokens, text)] and whether max_time cut it."""
    import torch
    from transformers import LogitsProcessorList

    model, proc, first_call = hf
    eos = set(model.generation_config.eos_token_id)
    hook = first_call()
    start = time.perf_counter()
    images = [[Image.open(io.BytesIO(png)).convert("RGB")] for png, _ in reqs]
    prompts = [proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
                                        add_generation_prompt=True, tokenize=False) for _, q in reqs]
    inputs = proc(text=prompts, images=images, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, max_time=max_time,
                             logits_processor=LogitsProcessorList([hook]))
    wall = time.perf_counter() - start
    cut = wall >= max_time
    res = []
    for row in out[:, inputs["input_ids"].shape[1]:].tolist():
        n = next((k + 1 for k, t in enumerate(row) if t in eos), len(row))
        text = proc.tokenizer.decode(row[:n - 1] if row[n - 1] in eos else row[:n], skip_special_tokens=True)
        res.append(((hook.at or start + wall) - start, wall, n, text))
    return res, cut


def bench_hf(args, hf, reqs, batches):
    """Each mode (batch size; 1: one by one): {batch: (results by request index, wall)}."""
    hf_batch(hf, reqs[:1], args.new_tokens, args.level_timeout)  # warm-up
    out = {}
    for b in batches:
        if args.warmup and b > 1:
            hf_batch(hf, reqs[:b], args.new_tokens, args.level_timeout)
        res, start = {}, time.perf_counter()
        for k in range(0, len(reqs), b):
            left = args.level_timeout - (time.perf_counter() - start)
            if left <= 0:
                break
            rows, cut = hf_batch(hf, reqs[k:k + b], args.new_tokens, left)
            if not cut:
                res.update({k + j: r for j, r in enumerate(rows)})
        out[b] = (res, time.perf_counter() - start)
        print(f"  HF, {mode_name(b)}: {out[b][1]:.1f} s", file=sys.stderr)
    return out


def mode_name(b):
    return "one by one" if b == 1 else f"batch {b}"


# ---- report ------------------------------------------------------------------------------------


def stats(res, wall):
    rows = list(res.values())
    ttft, lat = [r[0] for r in rows], [r[1] for r in rows]
    return sum(r[2] for r in rows) / wall, pct(ttft, 50), pct(ttft, 99), pct(lat, 50), pct(lat, 99)


def row(label, s, n, want, extra=""):
    tps, t50, t99, l50, l99 = s
    return (f"{label:>11} {tps:>9.1f} {t50:>8.3f}s {t99:>8.3f}s {l50:>7.3f}s {l99:>7.3f}s  {extra}"
            + ("" if n == want else f"  ({want - n} failed or cut)")).rstrip()


def mismatches(res, ref):
    both = [i for i in res if i in ref]
    return sum(res[i][3].strip() != ref[i][3].strip() for i in both), len(both)


def report(args, ours, hf, levels):
    import torch
    import transformers

    print(f"hardware: {cpu_name()}, {os.cpu_count()} cores; {args.size} model, {args.requests} requests per level, "
          f"at most {args.new_tokens} new tokens, greedy")
    print(f"ours: idefics2-serve, GOMLX_BACKEND={os.environ.get('GOMLX_BACKEND', '(default)')}, "
          f"max_batch {args.max_batch}" + (", warmed up" if args.warmup else ""))
    print(f"HF:   transformers {transformers.__version__} generate, torch {torch.__version__.split('+')[0]} CPU, "
          f"float32, sdpa, {args.threads} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}" + (", warmed up" if args.warmup else ""))
    print()
    print(f"{'concurrency':>11} {COLUMNS}  batches (size: count)")
    for level in levels:
        res, wall, sizes = ours[level]
        print(row(level, stats(res, wall), len(res), args.requests, str(sizes)))
    if not hf:
        return
    print()
    print(f"{'HF':>11} {COLUMNS}")
    for b, (res, wall) in hf.items():
        print(row(mode_name(b), stats(res, wall), len(res), args.requests))
    print()
    print(f"{'ours / HF':>11} {COLUMNS}  (tokens/s above 1, times below 1: ours is faster)")
    for level in levels:
        if ours[level][0] and hf[level][0]:
            a, b = stats(*ours[level][:2]), stats(*hf[level])
            print(f"{level:>11} " + " ".join(f"{x / y:>{w}.2f}x" for x, y, w in zip(a, b, (8, 8, 8, 7, 7)))
                  + f"  vs HF {mode_name(level)}")
    print()
    ref = hf[1][0] if 1 in hf else {}
    counts = [f"ours at concurrency {lv}: {'%d/%d' % mismatches(ours[lv][0], ref)}" for lv in levels]
    counts += [f"HF {mode_name(b)}: {'%d/%d' % mismatches(hf[b][0], ref)}" for b in hf if b != 1]
    print("greedy answers that differ from HF one by one: " + ", ".join(counts))
    if ref and ours[levels[0]][0]:
        i = min(set(ref) & set(ours[levels[0]][0]), default=None)
        if i is not None:
            print(f"  e.g. request {i + 1}: HF {ref[i][3]!r}, ours {ours[levels[0]][0][i][3]!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="directory with idefics2-serve")
    ap.add_argument("--size", choices=["tiny", "small"], default="small")
    ap.add_argument("--model", default="runs/tiny-model", help="the tiny model (--size tiny)")
    ap.add_argument("--tokenizer", default="testdata/tokenizer/idefics2")
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--requests", type=int, default=16, help="requests per level and per HF mode")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--level-timeout", type=float, default=300, help="seconds per level and per HF mode")
    ap.add_argument("--warmup", action="store_true",
                    help="run each level once before measuring it, so that XLA's compiles of its batch shapes are not timed")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the cores the server may use)")
    ap.add_argument("--seed", type=int, default=0, help="weights of the small model")
    ap.add_argument("--no-hf", action="store_true", help="ours only")
    args = ap.parse_args()

    t0 = time.perf_counter()
    levels = [int(x) for x in args.levels.split(",")]
    work = tempfile.mkdtemp(prefix="bench-serve-")
    try:
        model = model_dir(args, work)
        with open(os.path.join(model, "config.json")) as f:
            image_seq_len = json.load(f)["perceiver_config"]["resampler_n_latents"]
        reqs = make_requests(args.requests, IMAGE_SIZE[args.size])
        ours = bench_ours(args, model, reqs, levels)
        hf = {}
        if not args.no_hf:
            hf = bench_hf(args, hf_setup(args, model, image_seq_len), reqs, levels)
        report(args, ours, hf, levels)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
