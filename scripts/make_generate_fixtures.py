#!/usr/bin/env python3
"""Writes the `kind=generate` reference fixtures: HF `generate` with images, greedy.

Usage:
    .venv/bin/python scripts/make_generate_fixtures.py --out testdata/fixtures [--only NAME]

Every case is a directory <out>/<name>/ holding, as the fixture contract defines it
(/work/shared/spec/fixtures.md, "kind = generate"):
    meta.json, config.json, model.safetensors, generation_config.json (as save_pretrained writes them),
    inputs.safetensors (input_ids, attention_mask, pixel_values, pixel_attention_mask),
    generate.json (max_new_tokens, eos_token_id, bad_words_ids, pad_token_id, padding_side, ...),
    expected.safetensors (sequences I64 [B, T+new], exactly what generate returns).

The model is the tiny Idefics2 of make_model_fixtures.py (same config and weight rules, vision position ids
pinned to the original algorithm), with two changes that make greedy decoding a robust reference:
  * lm_head is scaled up (LM_HEAD_SCALE), so that the logits are spread out and the gap between the best and
    the second-best token is large compared to float32 round-off (the script measures the smallest gap over
    every step of every case and refuses gaps below MIN_GAP);
  * the end-of-utterance row of lm_head gets an extra push along the final hidden state's mean direction
    (the smallest of EOS_PUSHES, over a few weight seeds, that gives the case the stopping pattern it wants),
    so that end-of-sequence tokens actually occur and stopping is exercised.
Generation is HF's greedy search with the eos ids, bad_words_ids and pad id written in generate.json; the
script also checks that every row of a batch generates the same tokens when it is run alone (unpadded).
"""

import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

import transformers
from transformers import Idefics2ForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import idefics2_ref  # noqa: E402
import make_model_fixtures as mm  # noqa: E402  (tiny config, weights, inputs)

EOS_IDS = [mm.EOS, mm.EOU]  # as idefics2-8b: </s> and <end_of_utterance>
BAD_WORDS = [[mm.FAKE], [mm.IMAGE]]  # as idefics2-8b: <fake_token_around_image>, <image>
LM_HEAD_SCALE = 4.0
EOS_PUSHES = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5]  # tried in order, for weight seeds base, base+1, ...
SEED_TRIES = 8
MIN_GAP = 1e-3  # smallest acceptable top-1/top-2 logit gap (float32 round-off here is ~1e-6)

CASES = [
    dict(
        name="generate-single-image",
        notes="One sample, one 16x16 image (4x4 patches), no padding; greedy until eos or 12 new tokens.",
        images=[[(16, 16)]],
        layouts=[[2, "img", 5]],
        max_new_tokens=12,
        want=lambda new, stopped: stopped[0] and new[0] >= 4,
    ),
    dict(
        name="generate-single-two-images",
        notes="One sample with two images of different sizes (16x12 and 12x20, zero padded to 16x20 with "
        "pixel_attention_mask), text between them; greedy, 16 new tokens at most.",
        images=[[(16, 12), (12, 20)]],
        layouts=[[1, "img", 3, "img", 4]],
        max_new_tokens=16,
        want=lambda new, stopped: not stopped[0],
    ),
    dict(
        name="generate-batch-left-padded",
        notes="Three samples of different lengths, left padded (pad id 0) as HF's tokenizer pads for "
        "generation; sample 1 has two images, samples 0 and 2 one image and an all-zero padding image slot; "
        "image sizes differ (pixel_attention_mask). Rows stop at different steps; a stopped row is filled "
        "with pad_token_id. Every row alone (unpadded) generates the same tokens.",
        images=[[(16, 16)], [(12, 16), (16, 8)], [(8, 12)]],
        layouts=[[2, "img", 3], [1, "img", 6, "img", 2], [5, "img", 9]],
        sides=["left", "left", "left"],
        max_new_tokens=20,
        want=lambda new, stopped: any(s and n >= 3 for n, s in zip(new, stopped)) and not all(stopped),
    ),
    dict(
        name="generate-sliding-window-repetition",
        notes="Two left-padded samples whose prompt plus new tokens (up to 40) run far past the sliding "
        "window of 16, so the decode steps must apply the window to cache slots; greedy with "
        "repetition_penalty 1.3 (HF applies it to every id of the row so far, prompt and padding included) "
        "and a two-token bad word sequence [5, 6] besides the single-token ones.",
        images=[[(16, 16)], [(12, 12)]],
        layouts=[[6, "img", 8], [3, "img", 4]],
        sides=["left", "left"],
        max_new_tokens=40,
        repetition_penalty=1.3,
        extra_bad_words=[[5, 6]],
        want=lambda new, stopped: new[1] >= 12,
    ),
]


def build_model(seed, push, probe_case):
    """The tiny model of a case for a weight seed and an eos push; weights rounded to bfloat16 (as stored)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    config = mm.tiny_config()
    config._attn_implementation = "eager"
    model = Idefics2ForConditionalGeneration(config)
    mm.reinit_weights(model, gen)
    inputs = make_inputs(probe_case, gen)
    with torch.no_grad():
        model.lm_head.weight.mul_(LM_HEAD_SCALE)
    model.eval()
    push_eos(model, inputs, push)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    return model, inputs


def push_eos(model, probe_inputs, push):
    """Adds push * |row| * (mean final hidden direction) to the <end_of_utterance> row of lm_head."""
    if push == 0:
        return
    with torch.no_grad():
        out = model(**probe_inputs, output_hidden_states=True, use_cache=False)
        h = out.hidden_states[-1]  # after the final norm
        mask = probe_inputs["attention_mask"].bool()
        direction = h[mask].mean(0)
        direction = direction / direction.norm()
        model.lm_head.weight[mm.EOU] += push * direction * model.lm_head.weight[mm.EOU].norm()


def make_inputs(case, gen):
    pixel_values, pixel_attention_mask = mm.make_pixels(case["images"], gen)
    seqs = [mm.make_sequence(gen, layout) for layout in case["layouts"]]
    sides = case.get("sides", ["left"] * len(seqs))
    input_ids, attention_mask = mm.pad_batch(seqs, sides)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pixel_values": pixel_values,
        "pixel_attention_mask": pixel_attention_mask,
    }


def gen_kwargs(case):
    kw = dict(
        max_new_tokens=case["max_new_tokens"],
        do_sample=False,
        eos_token_id=EOS_IDS,
        pad_token_id=mm.PAD,
        bad_words_ids=BAD_WORDS + case.get("extra_bad_words", []),
    )
    if "repetition_penalty" in case:
        kw["repetition_penalty"] = case["repetition_penalty"]
    return kw


def run_generate(model, inputs, kw):
    with torch.no_grad():
        out = model.generate(**inputs, **kw, return_dict_in_generate=True, output_scores=True)
    seqs = out.sequences
    t = inputs["input_ids"].shape[1]
    # smallest gap between the best and second-best processed score over rows still generating
    gap = float("inf")
    finished = torch.zeros(seqs.shape[0], dtype=torch.bool)
    for step, scores in enumerate(out.scores):
        top2 = torch.topk(scores.float(), 2, dim=-1).values
        for r in range(seqs.shape[0]):
            if not finished[r]:
                gap = min(gap, float(top2[r, 0] - top2[r, 1]))
        finished |= torch.isin(seqs[:, t + step], torch.tensor(EOS_IDS))
    return seqs, gap


def single_row(inputs, r):
    """Row r alone, without its padding (text) and without padding image slots."""
    keep = inputs["attention_mask"][r].bool()
    ids = inputs["input_ids"][r][keep][None]
    pv = inputs["pixel_values"][r]
    pm = inputs["pixel_attention_mask"][r]
    real = [i for i in range(pv.shape[0]) if bool((pv[i] != 0).any())]
    pv, pm = pv[real], pm[real]
    # crop the canvas to this sample's own largest image, as the processor would for a batch of one
    hs = [int(pm[i].any(1).sum()) for i in range(len(real))]
    ws = [int(pm[i].any(0).sum()) for i in range(len(real))]
    pv = pv[:, :, : max(hs), : max(ws)][None].contiguous()
    pm = pm[:, : max(hs), : max(ws)][None].contiguous()
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": pv,
        "pixel_attention_mask": pm,
    }


def strip_new(seqs, t, r):
    """The new tokens of row r up to and including its first eos."""
    new = seqs[r, t:].tolist()
    out = []
    for tok in new:
        out.append(tok)
        if tok in EOS_IDS:
            break
    return out


def outcome(seqs, t):
    new = [strip_new(seqs, t, r) for r in range(seqs.shape[0])]
    return [len(n) for n in new], [n[-1] in EOS_IDS for n in new]


def search(case, base_seed):
    """First (weight seed, eos push) whose greedy outcome has the shape the case wants (deterministic)."""
    kw = gen_kwargs(case)
    for k in range(SEED_TRIES):
        seed = base_seed + k
        for push in EOS_PUSHES:
            model, inputs = build_model(seed, push, case)
            seqs, gap = run_generate(model, inputs, kw)
            new_lens, stopped = outcome(seqs, inputs["input_ids"].shape[1])
            if gap >= MIN_GAP and case["want"](new_lens, stopped):
                return seed, push, model, inputs
    raise AssertionError(f"{case['name']}: no seed/push in the search gives the wanted outcome")


def build_case(case, out_root, seed):
    index = [c["name"] for c in CASES].index(case["name"])
    case_seed, push, model, inputs = search(case, seed * 1000 + 500 + 10 * index)
    kw = gen_kwargs(case)

    out_dir = os.path.join(out_root, case["name"])
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    model.generation_config.bos_token_id = mm.BOS
    model.generation_config.eos_token_id = EOS_IDS
    model.generation_config.pad_token_id = mm.PAD
    model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(out_dir, safe_serialization=True)
    del model

    # the reference run uses the files just written, loaded in float32
    ref = Idefics2ForConditionalGeneration.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager")
    ref.eval()
    seqs, gap = run_generate(ref, inputs, kw)
    if gap < MIN_GAP:
        raise AssertionError(f"{case['name']}: top-1/top-2 logit gap {gap:.3g} is below {MIN_GAP}")
    t = inputs["input_ids"].shape[1]
    new_lens, stopped = outcome(seqs, t)
    if not case["want"](new_lens, stopped):
        raise AssertionError(f"{case['name']}: reloaded model changed the outcome")
    for r in range(seqs.shape[0]):
        # the same row alone must generate the same tokens
        single = single_row(inputs, r)
        alone, gap1 = run_generate(ref, single, kw)
        got = strip_new(alone, single["input_ids"].shape[1], 0)
        gap = min(gap, gap1)
        if got != strip_new(seqs, t, r):
            raise AssertionError(f"{case['name']}: row {r} alone generates {got}, in the batch {strip_new(seqs, t, r)}")

    save_file(inputs, os.path.join(out_dir, "inputs.safetensors"))
    save_file({"sequences": seqs.contiguous()}, os.path.join(out_dir, "expected.safetensors"))
    generate_json = dict(kw)
    generate_json["padding_side"] = "left"
    with open(os.path.join(out_dir, "generate.json"), "w") as f:
        json.dump(generate_json, f, indent=2)
        f.write("\n")
    meta = {
        "kind": "generate",
        "reference": mm.versions(),
        "atol": 0,
        "rtol": 0,
        "notes": case["notes"]
        + " Tiny random Idefics2 of make_model_fixtures.py (eager attention, float32 compute, one CPU thread, "
        "original vision position ids), weights stored as bfloat16 to keep the files small, lm_head scaled by "
        "%g and the <end_of_utterance> row pushed towards the mean final hidden state (eos_push), so that greedy "
        "choices are robust (min_top2_gap: smallest best/second-best processed-score gap over every step, also "
        "of every row run alone) and eos occurs. Tokens must be identical." % LM_HEAD_SCALE,
        "seed": case_seed,
        "eos_push": push,
        "min_top2_gap": gap,
        "new_tokens": new_lens,
        "stopped_on_eos": stopped,
    }
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return out_dir, gap, new_lens, stopped


def processor_cases(path, seed):
    """HF's logits processors (repetition penalty, bad words, temperature, top-k, top-p) applied to random
    scores, written as JSON: the Go side must produce the same processed scores (−inf where removed)."""
    from transformers.generation.logits_process import (
        NoBadWordsLogitsProcessor,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    gen = torch.Generator().manual_seed(seed)
    vocab = 40
    cases = []
    settings = [
        dict(repetition_penalty=1.3),
        dict(repetition_penalty=0.7),
        dict(bad_words_ids=[[3], [7, 8], [1, 2, 9]]),
        dict(temperature=0.7),
        dict(top_k=5),
        dict(top_k=1),
        dict(top_p=0.9),
        dict(top_p=0.3),
        dict(top_p=0.05),
        dict(temperature=1.5, top_k=10, top_p=0.8),
        dict(repetition_penalty=1.2, bad_words_ids=[[4]], temperature=0.8, top_k=8, top_p=0.7),
    ]
    for k, st in enumerate(settings):
        for rep in range(3):
            scores = torch.randn((1, vocab), generator=gen) * 3
            if rep == 2 and "top_p" not in st:  # ties, which top-k keeps together (top-p would cut them in
                # the order of torch's unstable sort)
                scores[0, 10:14] = scores[0, :].max()
            hist = torch.randint(0, vocab, (1, 12), generator=gen)
            hist[0, -2:] = torch.tensor([7, 1])
            hist[0, -1] = 2 if rep == 1 else hist[0, -1]
            procs = []
            if "repetition_penalty" in st:
                procs.append(RepetitionPenaltyLogitsProcessor(st["repetition_penalty"]))
            if "bad_words_ids" in st:
                procs.append(NoBadWordsLogitsProcessor(st["bad_words_ids"], eos_token_id=[]))
            if "temperature" in st:
                procs.append(TemperatureLogitsWarper(st["temperature"]))
            if "top_k" in st:
                procs.append(TopKLogitsWarper(st["top_k"]))
            if "top_p" in st:
                # refuse cases where a cumulative probability sits within 1e-5 of the threshold: float32
                # summation order could then decide the cut
                s2 = scores.clone()
                for pr in procs:
                    s2 = pr(hist, s2)
                cum = torch.sort(s2.double(), descending=False).values.softmax(-1).cumsum(-1)
                if bool(((cum - (1 - st["top_p"])).abs() < 1e-5).any()):
                    continue
                procs.append(TopPLogitsWarper(st["top_p"]))
            out = scores.clone()
            for pr in procs:
                out = pr(hist, out)
            cases.append(
                dict(
                    settings=st,
                    history=hist[0].tolist(),
                    scores=scores[0].tolist(),
                    want=[None if v == float("-inf") else v for v in out[0].tolist()],
                )
            )
    with open(path, "w") as f:
        json.dump({"reference": mm.versions(), "cases": cases}, f)
        f.write("\n")
    print(f"{path}: {len(cases)} logits-processor cases")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="fixture root directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="write only the case with this name")
    ap.add_argument(
        "--processors",
        default=os.path.join(HERE, "..", "testdata", "generate", "logits_processors.json"),
        help="where to write the logits-processor cases ('' to skip)",
    )
    args = ap.parse_args()

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    idefics2_ref.install_original_position_ids()

    if args.processors:
        os.makedirs(os.path.dirname(args.processors), exist_ok=True)
        processor_cases(args.processors, args.seed + 77)
    cases = [c for c in CASES if args.only is None or c["name"] == args.only]
    if not cases:
        sys.exit(f"no case named {args.only!r}; known: {', '.join(c['name'] for c in CASES)}")
    os.makedirs(args.out, exist_ok=True)
    for case in cases:
        d, gap, new_lens, stopped = build_case(case, args.out, args.seed)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(f"{case['name']}: {size} bytes, new tokens {new_lens}, stopped on eos {stopped}, min top-2 gap {gap:.3g}")


if __name__ == "__main__":
    main()
