"""Checks idefics2-serve with the clients people use: the official `openai` package and TGI's
`text_generation` client (the model card's code), against the server on 127.0.0.1.

For a base64 image and a question, the greedy answer of every route (chat completions streamed
and not, for the base model and for an adapter chosen by `model`; TGI's generate and
generate_stream with the card's prompt form and repetition_penalty=1.1) must equal
idefics2-generate's for the same image, prompt and settings. Bad requests must come back as the
clients' own errors, and SIGTERM must stop the server cleanly.

    python scripts/check_serve.py --bin DIR --model runs/tiny-model --tokenizer testdata/tokenizer/idefics2 \
        --adapter tiny-sft=runs/tiny/adapter

DIR holds the idefics2-serve and idefics2-generate binaries (make serve-check builds them).
"""

import argparse
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import openai
from PIL import Image
from text_generation import Client

QUESTION = "What shape is in the image?"
MAX_NEW = 12


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_model_dir(model, work):
    """The model's files, linked, plus a preprocessor_config.json with small images (the tiny
    model was trained on images of at most 64 pixels), so both binaries read the same settings."""
    d = os.path.join(work, "model")
    os.makedirs(d)
    for f in os.listdir(model):
        os.symlink(os.path.abspath(os.path.join(model, f)), os.path.join(d, f))
    if not os.path.exists(os.path.join(model, "preprocessor_config.json")):
        with open(os.path.join(d, "preprocessor_config.json"), "w") as fh:
            json.dump({"do_image_splitting": False, "size": {"longest_edge": 64, "shortest_edge": 32}}, fh)
    return d


def make_image(path):
    img = Image.new("RGB", (48, 32), (240, 240, 240))
    for x in range(10, 30):
        for y in range(6, 26):
            img.putpixel((x, y), (200, 30, 30))
    img.save(path)
    with open(path, "rb") as fh:
        return fh.read()


def reference(args, model, image, adapter=None, repetition_penalty=1.0):
    cmd = [os.path.join(args.bin, "idefics2-generate"), "--model", model, "--image", image, "--prompt", QUESTION,
           "--max-new-tokens", str(MAX_NEW), "--repetition-penalty", str(repetition_penalty)]
    if args.tokenizer:
        cmd += ["--tokenizer", args.tokenizer]
    if adapter:
        cmd += ["--adapter", adapter]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    # GoMLX's pure Go backend announces its parallelism on stdout; the answer is the rest.
    lines = [l for l in out.stdout.splitlines() if not l.startswith("SimpleGo backend:")]
    return "\n".join(lines).strip()


def wait_healthy(url, proc, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"idefics2-serve exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"idefics2-serve was not ready within {seconds} s")


def check(name, got, want):
    ok = got == want
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {got!r}" + ("" if ok else f" != idefics2-generate's {want!r}"))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="directory with idefics2-serve and idefics2-generate")
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer", default="")
    ap.add_argument("--adapter", default="", help="NAME=DIR of an adapter to serve and check")
    ap.add_argument("--ready-timeout", type=float, default=300)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="check-serve-")
    proc = None
    try:
        model = small_model_dir(args.model, work)
        image_path = os.path.join(work, "shape.png")
        data_url = "data:image/png;base64," + base64.b64encode(make_image(image_path)).decode()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [os.path.join(args.bin, "idefics2-serve"), "--model", model, "--addr", f"127.0.0.1:{port}", "--name", "base"]
        if args.tokenizer:
            cmd += ["--tokenizer", args.tokenizer]
        adapter_name, adapter_dir = (args.adapter.split("=", 1) + [""])[:2] if args.adapter else ("", "")
        if adapter_name:
            cmd += ["--adapter", args.adapter]
        proc = subprocess.Popen(cmd)
        wait_healthy(base, proc, args.ready_timeout)

        ok = True
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=300)
        ids = [m.id for m in client.models.list().data]
        ok &= check("models", ids, ["base"] + ([adapter_name] if adapter_name else []))

        messages = [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url}},
            {"type": "text", "text": QUESTION}]}]
        targets = [("base", None)] + ([(adapter_name, adapter_dir)] if adapter_name else [])
        for name, adapter in targets:
            want = reference(args, model, image_path, adapter)
            r = client.chat.completions.create(model=name, messages=messages, max_tokens=MAX_NEW, temperature=0)
            ok &= check(f"openai {name}", r.choices[0].message.content.strip(), want)
            ok &= check(f"openai {name} usage", r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, True)
            stream = client.chat.completions.create(model=name, messages=messages, max_tokens=MAX_NEW, temperature=0,
                                                    stream=True, stream_options={"include_usage": True})
            text, finish = "", None
            for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finish = chunk.choices[0].finish_reason or finish
            ok &= check(f"openai {name} stream", text.strip(), want)
            ok &= check(f"openai {name} stream finish_reason", finish in ("stop", "length"), True)

        # The model card's TGI code: the prompt in Idefics2's text form, images as markdown.
        want = reference(args, model, image_path, None, repetition_penalty=1.1)
        tgi = Client(base, timeout=300)
        prompt = f"User:![]({data_url}){QUESTION}<end_of_utterance>\nAssistant:"
        r = tgi.generate(prompt=prompt, max_new_tokens=MAX_NEW, repetition_penalty=1.1, do_sample=False)
        ok &= check("text_generation generate", r.generated_text.strip(), want)
        text = "".join(t.token.text for t in tgi.generate_stream(prompt=prompt, max_new_tokens=MAX_NEW,
                                                                  repetition_penalty=1.1, do_sample=False)
                       if not t.token.special)
        ok &= check("text_generation generate_stream", text.strip(), want)

        try:
            client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=2)
            ok &= check("unknown model refused", False, True)
        except openai.BadRequestError as e:
            ok &= check("unknown model refused", e.status_code, 400)
        try:
            bad = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
            client.chat.completions.create(model="base", messages=bad, max_tokens=2)
            ok &= check("undecodable image refused", False, True)
        except openai.BadRequestError as e:
            ok &= check("undecodable image refused", "does not decode" in str(e), True)

        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        ok &= check("SIGTERM exit status", code, 0)
        proc = None
        print("serve-check: " + ("all checks passed" if ok else "FAILED"))
        sys.exit(0 if ok else 1)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
