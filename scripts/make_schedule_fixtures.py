#!/usr/bin/env python3
"""Writes testdata/optim/schedules.json: the learning rate transformers' get_scheduler gives at every
optimizer step, for each schedule the trainer supports, and which parameter names HF Trainer exempts
from weight decay (Trainer.get_decay_parameter_names) on a tiny Idefics2 with a LoRA adapter and the
connector trained fully.

Usage: .venv/bin/python scripts/make_schedule_fixtures.py
"""

import json
import os
import sys

import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import Idefics2ForConditionalGeneration, get_scheduler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_model_fixtures as mf  # noqa: E402

OUT = os.path.join(HERE, "..", "testdata", "optim", "schedules.json")


def lrs(kind, lr, warmup, total):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=lr)
    sched = get_scheduler(kind, opt, num_warmup_steps=warmup, num_training_steps=total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])  # the lr the next optimizer step uses
        opt.step()
        sched.step()
    return out


def main():
    cases = []
    for kind in ["linear", "cosine", "constant", "constant_with_warmup"]:
        for warmup, total in [(0, 7), (3, 10), (50, 180)]:
            cases.append(dict(kind=kind, lr=1e-4, warmup=warmup, total=total, lrs=lrs(kind, 1e-4, warmup, total)))
    model = Idefics2ForConditionalGeneration(mf.tiny_config())
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "fc1"], modules_to_save=["connector"]))
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    decay = set(transformers.Trainer.get_decay_parameter_names(None, peft_model))
    # PEFT's in-memory names -> the saved keys the Go trainer uses
    def key(n):
        return (n.replace("base_model.model.", "", 1).replace(".modules_to_save.default", "")
                .replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B."))
    decays = {key(n): n in decay for n in names}
    with open(OUT, "w") as f:
        json.dump(dict(transformers=transformers.__version__, schedules=cases, decays=decays), f, indent=1, sort_keys=True)
        f.write("\n")
    print(OUT, len(cases), "schedules,", len(decays), "parameters")


if __name__ == "__main__":
    main()
