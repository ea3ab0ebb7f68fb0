#!/usr/bin/env python3
"""Hugging Face transformers (+ PEFT) side of the benchmark: the same measurements as
cmd/idefics2-bench, on the same config.json and batch shape, written as the same JSON.

Usage:
    .venv/bin/python scripts/bench_hf.py --size small --out build/bench/hf-small.json
    .venv/bin/python scripts/bench_hf.py --config path/to/config.json --dtype bfloat16 ...

Then `idefics2-bench -compare OURS.json,HF.json` prints both with ratios (`make bench` does all).

Sections (each after one warm-up call, times are medians of --iters calls):
  forward   model(**inputs, labels=labels) under no_grad, eval mode; loss.item() waits for it.
  train     LoRA rank r (alpha r, gaussian init, no dropout) on every projection of the decoder,
            the connector fully trained (modules_to_save), vision frozen; one step = forward,
            backward, clip_grad_norm_(1.0), AdamW(lr 1e-4), zero_grad. As in our train step,
            trained tensors keep float32 master copies with float32 AdamW moments while the
            forward runs in --dtype (--optimizer-states plain: PEFT's defaults, float32 LoRA
            matrices, and PyTorch's AdamW directly on the parameters, the connector's moments in
            --dtype).
  generate  greedy generate with min_new_tokens = max_new_tokens (random weights must not stop
            early); prefill = a generate call with max_new_tokens=1; decode tokens/s =
            B*(N-1)/(t(N) - t(1)); 20 generations = wall time of 20 calls of N tokens.
Model FLOPs, TFLOP/s and MFU are filled in by the Go side's -compare from the same FLOP count
(bench/flops.go), so both columns use one definition.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CONFIGS = {
    "tiny": "testdata/fixtures/model-tiny-basic/config.json",
    "small": "bench/configs/small.json",
    "8b": "bench/configs/8b.json",
}
# Same regex as bench.TrainTargets (bench/train.go).
TRAIN_TARGETS = r".*text_model.*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
LR = 1e-4

# Dense peaks (bench/hardware.go peakTable); substring of the GPU name -> (bf16, fp32) TFLOP/s.
PEAKS = [("H200", 989, 67, "H200 SXM"), ("H100", 989, 67, "H100 SXM"), ("A100", 312, 19.5, "A100 SXM"),
         ("L40S", 362, 91.6, "L40S"), ("A10G", 70, 35, "A10G"), ("4090", 165, 82.6, "RTX 4090")]


def log(*a):
    print("bench_hf:", *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# Machine
# ------------------------------------------------------------------------------------------------


def proc_kb(path, key):
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == key:
                    return int(v.split()[0])
    except OSError:
        pass
    return 0


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mib():
    return round(proc_kb("/proc/self/status", "VmHWM") / 1024, 1)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


class GPUMemSampler:
    """Polls nvidia-smi memory.used of GPU 0 (the same figure the Go side reports)."""

    def __init__(self, enabled=True):
        self.peak = 0.0
        self.proc = None
        if not enabled:
            return
        try:
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "100", "-i", "0"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.peak = max(self.peak, float(line.strip()))
            except ValueError:
                pass

    def reset(self):
        self.peak = 0.0

    def peak_mib(self):
        if self.proc is None:
            return 0.0
        time.sleep(0.15)
        return self.peak

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()


def hardware(device):
    h = {"cpu": cpu_name(), "cores": os.cpu_count(), "mem_gib": round(proc_kb("/proc/meminfo", "MemTotal") / (1 << 20), 1)}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        h["gpu"] = p.name
        h["gpu_mem_gib"] = round(p.total_memory / (1 << 30), 1)
        h["backend"] = f"torch {torch.__version__} CUDA {torch.version.cuda} ({p.name})"
    else:
        h["backend"] = f"torch {torch.__version__} CPU, {torch.get_num_threads()} threads"
    return h


def peak_for(gpu, dtype):
    for sub, bf16, fp32, name in PEAKS:
        if gpu and sub in gpu:
            if dtype == "bfloat16":
                return {"tflops": bf16, "source": f"table: {name} bf16 dense"}
            return {"tflops": fp32, "source": f"table: {name} fp32 (non-tensor-core)"}
    return {"tflops": 0, "source": ""}


# ------------------------------------------------------------------------------------------------
# Inputs: the layout of bench.SyntheticInputs (values differ; only shapes matter for speed)
# ------------------------------------------------------------------------------------------------


def synthetic_inputs(cfg, batch, text_tokens, image_size, device, dtype, gen):
    vocab = cfg["text_config"]["vocab_size"]
    n = cfg["perceiver_config"]["resampler_n_latents"]
    image_id = cfg["image_token_id"]
    bos = cfg["text_config"].get("bos_token_id", 1)
    fake = 32000 if vocab > 32000 else 3
    hi = min(vocab, 32000)
    T = text_tokens + n + 2
    half = text_tokens // 2
    ids = torch.randint(3, hi, (batch, T), generator=gen)
    ids[(ids == image_id) | (ids == fake)] = 3
    ids[:, 0] = bos
    ids[:, half] = fake
    ids[:, half + 1:half + n + 1] = image_id
    ids[:, half + n + 1] = fake
    labels = ids.clone()
    labels[:, half:half + n + 2] = -100
    S = image_size
    pixels = torch.randn((batch, 1, 3, S, S), generator=gen)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "pixel_values": pixels.to(device=device, dtype=dtype),
        "pixel_attention_mask": torch.ones((batch, 1, S, S), dtype=torch.bool).to(device),
    }, labels.to(device), T


# ------------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------------


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def reset_section(device, sampler):
    reset_peak_rss()
    sampler.reset()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def memory(section, device, sampler):
    section["host_peak_mib"] = peak_rss_mib()
    if device.type == "cuda":
        section["device_peak_mib"] = sampler.peak_mib()
        section["torch_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / (1 << 20), 1)


def rates(section, secs, batch, seq):
    section["samples_per_s"] = batch / secs
    section["tokens_per_s"] = batch * seq / secs


def bench_forward(model, inputs, labels, args, device, sampler, T):
    model.eval()

    def call():
        with torch.no_grad():
            return model(**inputs, labels=labels).loss.item()

    first, loss = timed(call, device)
    ds = []
    for _ in range(args.iters):
        d, loss = timed(call, device)
        ds.append(d)
    med = statistics.median(ds)
    s = {"iters": args.iters, "compile_count": 0, "compile_s": 0, "first_call_s": round(first, 3),
         "median_ms": round(med * 1e3, 3), "min_ms": round(min(ds) * 1e3, 3), "loss": loss}
    rates(s, med, args.batch, T)
    memory(s, device, sampler)
    log(f"forward: first {first:.2f}s, median {med * 1e3:.1f} ms, loss {loss:.4f}")
    return s


def bench_generate(model, inputs, args, device, sampler, pad_id):
    model.eval()
    N = args.new_tokens

    def gen(k):
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=k, min_new_tokens=k, do_sample=False,
                                 pad_token_id=pad_id, use_cache=True)
        return out

    timed(lambda: gen(N), device)  # warm-up
    t1 = [timed(lambda: gen(1), device)[0] for _ in range(args.iters)]
    tn = [timed(lambda: gen(N), device)[0] for _ in range(args.iters)]
    m1, mn = statistics.median(t1), statistics.median(tn)
    start = time.perf_counter()
    for _ in range(20):
        gen(N)
    sync(device)
    twenty = time.perf_counter() - start
    s = {"new_tokens": N, "iters": args.iters, "prefill_ms": round(m1 * 1e3, 3), "generate_ms": round(mn * 1e3, 3),
         "decode_tokens_per_s": args.batch * (N - 1) / (mn - m1) if N > 1 and mn > m1 else 0,
         "twenty_generations_s": round(twenty, 3), "compile_count": 0, "compile_s": 0}
    memory(s, device, sampler)
    log(f"generate: prefill {m1 * 1e3:.1f} ms, {N} tokens {mn * 1e3:.1f} ms, 20 generations {twenty:.2f}s")
    return s


class MasterAdamW:
    """AdamW on float32 master copies of compute-dtype parameters, as train.Stepper does it: the
    gradient is copied into the master's float32 grad, clipped there, the float32 moments and
    master are updated, and the result is cast back into the parameter the forward uses.
    Parameters already in float32 are their own masters."""

    def __init__(self, params, lr, max_norm):
        self.params = params
        self.masters = [p.detach().float().clone() if p.dtype != torch.float32 else p for p in params]
        self.opt = torch.optim.AdamW(self.masters, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        self.max_norm = max_norm

    def step(self):
        for p, m in zip(self.params, self.masters):
            if m is not p and p.grad is not None:
                m.grad = p.grad.float()
        torch.nn.utils.clip_grad_norm_(self.masters, self.max_norm)
        self.opt.step()
        with torch.no_grad():
            for p, m in zip(self.params, self.masters):
                if m is not p:
                    p.copy_(m)
        self.opt.zero_grad(set_to_none=True)
        for p in self.params:
            p.grad = None


def bench_train(model, inputs, labels, args, device, sampler, T):
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(r=args.lora_rank, lora_alpha=args.lora_rank, lora_dropout=0.0, target_modules=TRAIN_TARGETS,
                      init_lora_weights="gaussian", modules_to_save=["connector"])
    # PEFT would otherwise make the LoRA matrices float32 and run them in float32; ours runs them
    # in the compute dtype from float32 masters, which MasterAdamW reproduces.
    try:
        pm = get_peft_model(model, lcfg, autocast_adapter_dtype=args.optimizer_states != "float32")
    except TypeError:  # a PEFT without the argument
        pm = get_peft_model(model, lcfg)
    pm.train()
    params = [p for p in pm.parameters() if p.requires_grad]
    if args.optimizer_states == "float32":
        opt = MasterAdamW(params, LR, 1.0)

        def update():
            opt.step()
    else:
        plain = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)

        def update():
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            plain.step()
            plain.zero_grad(set_to_none=True)

    def step():
        loss = pm(**inputs, labels=labels).loss
        loss.backward()
        update()
        return loss.item()

    first, loss = timed(step, device)
    ds = []
    for _ in range(args.iters):
        d, loss = timed(step, device)
        ds.append(d)
    med = statistics.median(ds)
    s = {"iters": args.iters, "compile_count": 0, "compile_s": 0, "first_call_s": round(first, 3),
         "median_ms": round(med * 1e3, 3), "min_ms": round(min(ds) * 1e3, 3), "loss": loss,
         "trainable_params": sum(p.numel() for p in params)}
    s["trainable_dtypes"] = sorted({str(p.dtype).replace("torch.", "") for p in params})
    rates(s, med, args.batch, T)
    memory(s, device, sampler)
    log(f"train: first step {first:.2f}s, median {med * 1e3:.1f} ms, loss {loss:.4f}")
    return s


def dropouts(cfg):
    """Every *dropout* value of the config, nested ones included."""
    found = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            found.update({f"{k}.{kk}": vv for kk, vv in dropouts(v).items()})
        elif "dropout" in k:
            found[k] = v
    return found


def differences(args, cfg, device):
    """What is the same as our side and what is not, printed under the comparison table."""
    drop = dropouts(cfg)
    nonzero = {k: v for k, v in drop.items() if v}
    notes = []
    if args.optimizer_states == "float32":
        notes.append("same: trained tensors (LoRA, connector) keep float32 masters and float32 AdamW moments "
                     f"(lr {LR}, betas 0.9/0.999, eps 1e-8, no weight decay), grad-norm clip 1.0 on the float32 "
                     f"gradients; the forward runs in {args.dtype}")
    else:
        notes.append(f"differs: PyTorch's AdamW directly on the parameters: the connector and its moments in {args.dtype}, "
                     "LoRA in float32 (ours: float32 masters and moments, everything computed in the compute dtype)")
    notes.append("same: no dropout on either side (lora_dropout 0; " +
                 (f"config dropouts nonzero: {nonzero}" if nonzero else "every dropout of the config is 0") + ")")
    notes.append(f"differs: attention is attn_implementation={args.attn}" +
                 (" (PyTorch's fused SDPA kernels)" if args.attn == "sdpa" else "") +
                 "; ours is softmax(QK^T/sqrt(d))V compiled by XLA")
    notes.append("differs: eager PyTorch without torch.compile (no compile time, one kernel launch per op); "
                 "ours compiles whole graphs first (compile time in the table)")
    notes.append("differs: backward writes compute-dtype .grad tensors that are then copied to the float32 masters; "
                 "ours accumulates float32 gradients inside the backward graph")
    notes.append("differs: generation grows a DynamicCache per token in a Python loop; ours runs compiled prefill and "
                 "decode-step graphs over a fixed-length KV cache")
    if device.type == "cuda":
        notes.append("differs: device peak is nvidia-smi's view of the process (PyTorch's caching allocator; "
                     "torch_max_allocated_mib in the JSON counts tensors alone); ours is XLA's pool")
    notes.append("differs: random weights are drawn differently (normal here, uniform in ours); only shapes matter for speed")
    return notes


# ------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="tiny", help="tiny, small, 8b (the files cmd/idefics2-bench uses)")
    ap.add_argument("--config", default="", help="a config.json instead of --size")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, eager, flash_attention_2)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--text-tokens", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=0, help="0: the config's image_size")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--sections", default="forward,train,generate")
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--optimizer-states", default="float32", choices=["float32", "plain"],
                    help="float32: float32 masters and AdamW moments for the trained tensors (as ours); "
                         "plain: PEFT's defaults and PyTorch's AdamW directly on the parameters")
    ap.add_argument("--peak-tflops", type=float, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    import transformers
    from transformers import Idefics2Config, Idefics2ForConditionalGeneration

    rel = args.config or CONFIGS.get(args.size, args.size)
    path = rel if os.path.isabs(rel) else os.path.join(ROOT, rel)
    with open(path) as f:
        cfg_dict = json.load(f)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads or os.cpu_count())
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    config = Idefics2Config(**cfg_dict)
    config._attn_implementation = args.attn
    for sub in ("vision_config", "perceiver_config", "text_config"):
        getattr(config, sub)._attn_implementation = args.attn
    sampler = GPUMemSampler(enabled=device.type == "cuda")

    hw = hardware(device)
    reset_peak_rss()
    t0 = time.perf_counter()
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = Idefics2ForConditionalGeneration(config)
    torch.set_default_dtype(old)
    model.to(device=device, dtype=dtype)
    sync(device)
    setup = {"init_s": round(time.perf_counter() - t0, 3), "host_peak_mib": peak_rss_mib()}
    nparams = sum(p.numel() for p in model.parameters())
    log(f"{args.size}: {nparams / 1e6:.4g} M params, {args.dtype}, {hw['backend']}; init {setup['init_s']:.2f}s")

    image_size = args.image_size or cfg_dict["vision_config"]["image_size"]
    inputs, labels, T = synthetic_inputs(cfg_dict, args.batch, args.text_tokens, image_size, device, dtype, gen)
    patch = cfg_dict["vision_config"]["patch_size"]
    peak = {"tflops": args.peak_tflops, "source": "flag --peak-tflops"} if args.peak_tflops > 0 else peak_for(hw.get("gpu"), args.dtype)
    res = {
        "impl": "hf", "size": args.size if not args.config else args.config, "config": rel, "dtype": args.dtype,
        "params": nparams, "hardware": hw,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__},
        "shape": {"batch": args.batch, "text_tokens": args.text_tokens, "image_size": image_size, "seq": T,
                  "patches_per_image": (image_size // patch) ** 2, "new_tokens": args.new_tokens},
        "peak": peak, "lora_rank": args.lora_rank, "setup": setup,
        "notes": differences(args, cfg_dict, device),
    }
    sections = args.sections.split(",")
    # The train step wraps the model with PEFT, so it runs last (as on the Go side).
    order = [s for s in ("forward", "generate", "train") if s in sections]
    pad_id = cfg_dict["text_config"].get("pad_token_id") or 0

    def write():
        # After every section: a run cut short by a time limit keeps what it measured.
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as f:
                f.write(json.dumps(res, indent=2) + "\n")

    write()
    for s in order:
        reset_section(device, sampler)
        if s == "forward":
            res["forward"] = bench_forward(model, inputs, labels, args, device, sampler, T)
        elif s == "generate":
            res["generate"] = bench_generate(model, inputs, args, device, sampler, pad_id)
        elif s == "train":
            import peft
            res["versions"]["peft"] = peft.__version__
            res["train"] = bench_train(model, inputs, labels, args, device, sampler, T)
        write()
    sampler.stop()
    if args.out:
        log("wrote", args.out)
    else:
        print(json.dumps(res, indent=2))

if __name__ == "__main__":
    main()
