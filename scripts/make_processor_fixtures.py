#!/usr/bin/env python3
"""Write kind=processor fixtures (and Pillow decode/resize checks) for the Go package data/.

Everything expected is computed by the pinned reference stack: transformers' Idefics2Processor
and Idefics2ImageProcessorPil (the PIL class, the one the model was trained with), the
`tokenizers` library on the fixture tokenizer, Pillow for decoding and resizing.

Images are real: scikit-image's bundled sample photographs and scans (astronaut, camera,
coffee, chelsea, rocket, hubble_deep_field, text, logo, ...) and pages of text rendered with
Pillow, saved as PNG and JPEG in the modes datasets hold (RGB, L, P, RGBA with transparency,
16-bit), at sizes below 378 px, between, and above 980 px, with extreme aspect ratios.

Two text behaviours are produced (case.json "compat", see data/compat.go):
  trained        the tokenizer.json pipeline as written (what idefics2 was trained with and what
                 transformers 4.40-4.57 did); placeholders expanded as spec §4.1 says (plain
                 replace + double-fake collapse; this 3-line step is written here because
                 transformers 5's processor adds a step 4.x did not have).
  transformers5  the stock transformers 5 Idefics2Processor with AutoTokenizer (LlamaTokenizer).
Images always go through HF's load_image (EXIF orientation + convert("RGB")), as both versions
of Idefics2Processor do, then through Idefics2ImageProcessorPil.

Labels (case.json "labels"): "answers" = only the tokens that extend each "Assistant:"
generation prompt to the end of that turn's <end_of_utterance>; "all" = every token except
<image> and padding. They are computed here by tokenizing prefixes of the conversation (and
asserting the prefixes tokenize as prefixes), independently of the Go code's offset method.

Large tensors: committed fixtures keep tensors above --max-tensor-bytes only as a SHA-256 of
their little-endian bytes (meta.json "sha256"); --full stores every tensor (use it for an
out-of-tree root given to the Go tests through IDEFICS2_FIXTURES).

Usage:
  scripts/make_processor_fixtures.py --out testdata/fixtures --pillow-out testdata/pillow
  scripts/make_processor_fixtures.py --full --out /tmp/fx --pillow-out /tmp/fx-pillow
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import sys

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFont, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_TOKENIZER = os.path.join(ROOT, "testdata", "tokenizer", "idefics2")

FAKE, IMG, EOU = "<fake_token_around_image>", "<image>", "<end_of_utterance>"
IMAGE_SEQ_LEN = 64
CHAT_TEMPLATE = (
    "{% for message in messages %}{{message['role'].capitalize()}}{% if message['content'][0]['type'] == 'image' %}"
    "{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}"
    "{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


# ----------------------------------------------------------------------------------------------
# Source images

def skimage_file(name):
    import skimage.data
    return os.path.join(os.path.dirname(skimage.data.__file__), name)


def skimage_image(name):
    return Image.open(skimage_file(name))


def encode(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def text_page(width, height, lines, size=28, seed=0):
    """A document page: title, paragraphs and a small table, rendered with Pillow's bundled font."""
    rng = np.random.RandomState(seed)
    im = Image.new("L", (width, height), 255)
    d = ImageDraw.Draw(im)
    title = ImageFont.load_default(size=int(size * 1.6))
    body = ImageFont.load_default(size=size)
    y = int(height * 0.05)
    d.text((int(width * 0.08), y), "Notes on Vision-Language Models", fill=0, font=title)
    y += int(size * 3)
    words = ("image text model page table answer question visual tokens encoder resolution patch "
             "splitting crop training data document chart figure total value revenue").split()
    for i in range(lines):
        line = " ".join(rng.choice(words) for _ in range(rng.randint(6, 12)))
        d.text((int(width * 0.08), y), line.capitalize() + ("." if i % 3 == 2 else ""), fill=rng.randint(0, 60), font=body)
        y += int(size * 1.5)
        if y > height * 0.8:
            break
    for r in range(4):
        for c in range(3):
            x0, y0 = int(width * (0.1 + 0.27 * c)), int(height * 0.83 + r * size * 1.4)
            d.rectangle([x0, y0, x0 + int(width * 0.25), y0 + int(size * 1.3)], outline=0)
            d.text((x0 + 6, y0 + 4), f"{rng.randint(0, 9999)}", fill=0, font=body)
    return im


def with_alpha(rgb, seed=1):
    """RGBA: a real photo with a soft transparent border and a fully transparent hole."""
    w, h = rgb.size
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.sqrt(((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2)
    alpha = np.clip((1.1 - r) * 400, 0, 255).astype(np.uint8)
    alpha[h // 3:h // 2, w // 3:w // 2] = 0
    a = np.dstack([np.asarray(rgb.convert("RGB")), alpha])
    return Image.fromarray(a, "RGBA")


def build_sources():
    """name -> encoded bytes. Deterministic for a given Pillow/scikit-image."""
    src = {}
    astro = skimage_image("astronaut.png").convert("RGB")
    src["astronaut.jpg"] = encode(astro, "JPEG", quality=90)
    src["camera_small.png"] = encode(skimage_image("camera.png").resize((300, 300), Image.LANCZOS), "PNG")
    src["coffee.jpg"] = encode(skimage_image("coffee.png").convert("RGB"), "JPEG", quality=85)
    src["chelsea_p.png"] = encode(skimage_image("chelsea.png").convert("RGB").resize((225, 150), Image.LANCZOS)
                                  .quantize(64), "PNG")
    src["text_gray.png"] = open(skimage_file("text.png"), "rb").read()
    src["rocket.jpg"] = open(skimage_file("rocket.jpg"), "rb").read()
    src["hubble.jpg"] = encode(skimage_image("hubble_deep_field.jpg"), "JPEG", quality=70)
    src["page_text.png"] = encode(text_page(1240, 1754, 30), "PNG", optimize=True)
    src["logo_rgba.png"] = encode(skimage_image("logo.png").resize((240, 240), Image.LANCZOS), "PNG")
    src["astronaut_rgba.png"] = encode(with_alpha(astro.resize((330, 250), Image.LANCZOS)), "PNG")
    band = astro.crop((0, 200, 512, 216)).resize((1600, 50), Image.LANCZOS)
    src["strip_wide.png"] = encode(band, "PNG")
    src["strip_tall.jpg"] = encode(astro.crop((240, 0, 252, 512)).resize((60, 1400), Image.LANCZOS), "JPEG", quality=85)
    return src


# ----------------------------------------------------------------------------------------------
# Pillow decode and resize checks (testdata/pillow)

def decode_sources():
    """Small files in every format and mode the decoder supports, with odd sizes."""
    astro = skimage_image("astronaut.png").convert("RGB")
    small = astro.resize((61, 47), Image.LANCZOS)
    gray = skimage_image("camera.png").resize((53, 41), Image.LANCZOS)
    rgba = with_alpha(small)
    out = {}
    out["rgb.png"] = encode(small, "PNG")
    out["rgba.png"] = encode(rgba, "PNG")
    out["la.png"] = encode(Image.merge("LA", (gray, gray.point(lambda v: 255 - v))), "PNG")
    out["l.png"] = encode(gray, "PNG")
    out["one_bit.png"] = encode(gray.point(lambda v: 255 if v > 128 else 0).convert("1"), "PNG")
    out["p.png"] = encode(small.quantize(32), "PNG")
    p = small.quantize(16)
    out["p_trns.png"] = encode(p, "PNG", transparency=3)
    out["rgb_trns.png"] = encode(small, "PNG", transparency=tuple(np.asarray(small)[5, 7].tolist()))
    out["l_trns.png"] = encode(gray, "PNG", transparency=int(np.asarray(gray)[3, 3]))
    g16 = (np.asarray(gray).astype(np.uint16) * 3)
    out["gray16.png"] = encode(Image.fromarray(g16), "PNG")
    rgb16 = np.asarray(small).astype(np.uint16) * 257 + np.arange(61, dtype=np.uint16)[None, :, None]
    out["rgb16.png"] = rgb16_png(rgb16)
    for sub, name in [(0, "444"), (1, "422"), (2, "420")]:
        out[f"jpeg_{name}.jpg"] = encode(small, "JPEG", quality=88, subsampling=sub)
    out["jpeg_progressive.jpg"] = encode(small, "JPEG", quality=70, progressive=True)
    out["jpeg_gray.jpg"] = encode(gray, "JPEG", quality=80)
    out["jpeg_cmyk.jpg"] = encode(small.convert("CMYK"), "JPEG", quality=90)
    for o in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        out[f"jpeg_orient{o}.jpg"] = encode(small, "JPEG", quality=90, exif=exif.tobytes())
    exif = Image.Exif()
    exif[0x0112] = 6
    out["png_orient6.png"] = encode(small, "PNG", exif=exif.tobytes())
    out["rocket.jpg"] = open(skimage_file("rocket.jpg"), "rb").read()
    out["hubble_deep_field.jpg"] = open(skimage_file("hubble_deep_field.jpg"), "rb").read()
    out["anim.gif"] = open(skimage_file("no_time_for_that_tiny.gif"), "rb").read()
    out["p_trns.gif"] = encode(p, "GIF", transparency=3)
    out["rgb.bmp"] = encode(small, "BMP")
    out["rgb.tif"] = encode(small, "TIFF")
    out["l.tif"] = encode(gray, "TIFF", compression="tiff_deflate")
    out["lossless.webp"] = encode(small, "WEBP", lossless=True)
    out["rgba_lossless.webp"] = encode(rgba, "WEBP", lossless=True)
    out["lossy.webp"] = encode(small, "WEBP", quality=80)
    out["rgba_lossy.webp"] = encode(rgba, "WEBP", quality=75)
    out["anim.webp"] = encode(small, "WEBP", quality=80, save_all=True,
                              append_images=[small.transpose(Image.FLIP_LEFT_RIGHT)], duration=100)
    return out


def rgb16_png(a):
    """Pillow cannot write 48-bit RGB; write the PNG by hand (filter 0 rows, zlib)."""
    import struct
    import zlib
    h, w, _ = a.shape

    def chunk(t, data):
        c = struct.pack(">I", len(data)) + t + data
        return c + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_pillow_checks(out_dir, max_bytes):
    from safetensors.numpy import save_file
    from transformers.image_transforms import convert_to_rgb
    from transformers.image_utils import load_image

    os.makedirs(os.path.join(out_dir, "decode"), exist_ok=True)
    tensors, entries = {}, []
    for name, data in sorted(decode_sources().items()):
        with open(os.path.join(out_dir, "decode", name), "wb") as f:
            f.write(data)
        im = Image.open(io.BytesIO(data))
        proc = np.ascontiguousarray(np.asarray(load_image(Image.open(io.BytesIO(data)))))
        improc = np.ascontiguousarray(convert_to_rgb(Image.open(io.BytesIO(data)), return_numpy=True))
        e = {"file": name, "pillow_mode": im.mode, "size": list(im.size),
             "processor_sha256": sha(proc), "image_processor_sha256": sha(improc),
             "shape": list(proc.shape), "image_processor_shape": list(improc.shape)}
        for key, arr in (("processor", proc), ("image_processor", improc)):
            if max_bytes == 0 or arr.nbytes <= max_bytes:
                tensors[f"{name}:{key}"] = arr
        entries.append(e)
    save_file(tensors, os.path.join(out_dir, "decode", "expected.safetensors"))
    dump_json(os.path.join(out_dir, "decode", "decode.json"), {
        "reference": versions(),
        "notes": "processor = transformers.image_utils.load_image (EXIF transpose + convert('RGB')), what "
                 "Idefics2Processor applies to every image; image_processor = transformers.image_transforms."
                 "convert_to_rgb (transparency over white). Arrays are HWC uint8; large ones only as sha256.",
        "files": entries})

    # Resize: many (source, target) pairs through Pillow BILINEAR, the call HF makes.
    rng = np.random.RandomState(7)
    srcs = {
        "noise": rng.randint(0, 256, (23, 37, 3)).astype(np.uint8),
        "astro": np.asarray(skimage_image("astronaut.png").convert("RGB").resize((97, 71), Image.LANCZOS)),
        "page": np.asarray(text_page(155, 219, 8, size=6).convert("RGB")),
        "big": np.asarray(skimage_image("hubble_deep_field.jpg").convert("RGB")),
    }
    rt, cases = {}, []
    for name, a in srcs.items():
        H, W = a.shape[:2]
        if name != "big":
            rt["src:" + name] = a
        targets = {(W, H), (1, 1), (W + 1, H), (W, H - 1), (2 * W + 3, H // 2), (max(W // 3, 1), 3 * H),
                   (378, 378), (W * 5, H * 7)}
        for _ in range(10):
            targets.add((int(rng.randint(1, 3 * W)), int(rng.randint(1, 3 * H))))
        if name == "big":
            targets = {(980, 854), (490, 427), (378, 378), (1000, 980), (577, 1311)}
        for (w, h) in sorted(targets):
            o = np.ascontiguousarray(np.asarray(Image.fromarray(a).resize((w, h), Image.BILINEAR)))
            key = f"out:{name}:{w}x{h}"
            c = {"src": name, "w": w, "h": h, "sha256": sha(o), "key": key}
            if name == "big":
                c["src_file"] = "decode/hubble_deep_field.jpg"
            elif max_bytes == 0 or o.nbytes <= max_bytes:
                rt[key] = o
            cases.append(c)
    save_file(rt, os.path.join(out_dir, "resize.safetensors"))
    dump_json(os.path.join(out_dir, "resize.json"), {
        "reference": versions(),
        "notes": "Pillow Image.resize(BILINEAR, reducing_gap=None) on RGB uint8, HWC; src 'big' is "
                 "decode/hubble_deep_field.jpg decoded by Pillow; outputs above the size limit only as sha256.",
        "cases": cases})


# ----------------------------------------------------------------------------------------------
# Processor cases

def T(s):
    return {"type": "text", "text": s}


I = {"type": "image"}

UNICODE_Q = "  Qu'est-ce que c'est ?\tRéponds en 日本語 et en emoji 🦙👍🏽…\u00a0fin  \n\nLigne\u200bdeux "
CASES = [
    dict(name="single-jpeg-gen", images=["astronaut.jpg"], gen=True,
         messages=[{"role": "user", "content": [I, T("What is in this image?")]}]),
    dict(name="single-jpeg-gen-t5", compat="transformers5", images=["astronaut.jpg"], gen=True,
         messages=[{"role": "user", "content": [I, T("What is in this image?")]}]),
    dict(name="docpage-split-train", images=["page_text.png"], split=True, labels="answers",
         messages=[{"role": "user", "content": [T("Answer briefly."), I, T("What is the title of this page?")]},
                   {"role": "assistant", "content": [T("Notes on Vision-Language Models")]}]),
    dict(name="gray-small-gen", images=["camera_small.png"], gen=True,
         messages=[{"role": "user", "content": [I, T("Describe the photograph.")]}]),
    dict(name="rgba-split-all", images=["logo_rgba.png"], split=True, labels="all",
         messages=[{"role": "user", "content": [I, T("Which library is this the logo of?")]},
                   {"role": "assistant", "content": [T("scikit-image.")]}]),
    dict(name="large-jpeg-train", images=["hubble.jpg"], labels="answers",
         messages=[{"role": "user", "content": [T("How many galaxies are visible? Answer with a number."), I]},
                   {"role": "assistant", "content": [T("Hundreds")]}]),
    dict(name="extreme-aspect-adjacent", images=["strip_wide.png", "strip_tall.jpg"], split=True, gen=True,
         messages=[{"role": "user", "content": [I, I, T("Compare the two strips.")]}]),
    dict(name="multi-turn", images=["coffee.jpg", "chelsea_p.png"], labels="answers",
         messages=[{"role": "user", "content": [I, T("Describe it.")]},
                   {"role": "assistant", "content": [T("A cup of coffee on a saucer.")]},
                   {"role": "user", "content": [T("And this one?"), I]},
                   {"role": "assistant", "content": [T("A cat.")]},
                   {"role": "user", "content": [T("Which one is brighter?")]},
                   {"role": "assistant", "content": [T("The first image.")]}]),
    dict(name="multi-turn-t5", compat="transformers5", images=["coffee.jpg", "chelsea_p.png"], labels="answers",
         messages=[{"role": "user", "content": [I, T("Describe it.")]},
                   {"role": "assistant", "content": [T("A cup of coffee on a saucer.")]},
                   {"role": "user", "content": [T("And this one?"), I]},
                   {"role": "assistant", "content": [T("A cat.")]}]),
    dict(name="unicode-whitespace", images=["text_gray.png", "rocket.jpg"], labels="answers",
         messages=[{"role": "user", "content": [I, T(UNICODE_Q), I, T(" <b>tag</b> after\nimage")]},
                   {"role": "assistant", "content": [T(" Deux images :\n- texte\n- fusée 🚀 ")]}]),
    dict(name="unicode-whitespace-t5", compat="transformers5", images=["text_gray.png", "rocket.jpg"], labels="answers",
         messages=[{"role": "user", "content": [I, T(UNICODE_Q), I, T("word<b>tag</b> after\nimage")]},
                   {"role": "assistant", "content": [T(" Deux images :\n- texte\n- fusée 🚀 ")]}]),
    dict(name="custom-size-split", images=["rocket.jpg"], split=True, size=(490, 224), gen=True,
         messages=[{"role": "user", "content": [T("What is launching?"), I]}]),
    dict(name="text-only", images=[], labels="answers",
         messages=[{"role": "system", "content": [T("You are terse.")]},
                   {"role": "user", "content": [T("Say hi.")]},
                   {"role": "assistant", "content": [T("Hi.")]}]),
    dict(name="batch-image-counts", labels="answers", batch=[
        dict(images=["astronaut_rgba.png"],
             messages=[{"role": "user", "content": [I, T("Who is this?")]},
                       {"role": "assistant", "content": [T("An astronaut.")]}]),
        dict(images=["coffee.jpg", "chelsea_p.png", "camera_small.png"],
             messages=[{"role": "user", "content": [T("Three pictures:"), I, I, T("and"), I]},
                       {"role": "assistant", "content": [T("Coffee, a cat and a cameraman.")]}]),
        dict(images=["text_gray.png"],
             messages=[{"role": "user", "content": [I]},
                       {"role": "assistant", "content": [T("Image processing text.")]}]),
    ]),
    dict(name="batch-image-counts-t5", compat="transformers5", labels="answers", batch=[
        dict(images=["astronaut_rgba.png"],
             messages=[{"role": "user", "content": [I, T("Who is this?")]},
                       {"role": "assistant", "content": [T("An astronaut.")]}]),
        dict(images=["coffee.jpg", "chelsea_p.png"],
             messages=[{"role": "user", "content": [T("Two pictures:"), I, I]},
                       {"role": "assistant", "content": [T("Coffee and a cat.")]}]),
    ]),
    dict(name="batch-split-gen", split=True, gen=True, batch=[
        dict(images=["camera_small.png"], messages=[{"role": "user", "content": [I, T("What is this?")]}]),
        dict(images=["strip_tall.jpg", "logo_rgba.png"],
             messages=[{"role": "user", "content": [T("Look:"), I, T("then"), I, T("Which is taller?")]}]),
    ]),
]


class Reference:
    """The reference pipeline for one compat mode and one image-processor setting."""

    def __init__(self, tokenizer_dir, compat, split, size):
        from tokenizers import Tokenizer
        from transformers import AutoTokenizer, Idefics2Processor
        from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil

        self.compat = compat
        self.split = split
        self.ip = Idefics2ImageProcessorPil(do_image_splitting=split,
                                            size={"longest_edge": size[0], "shortest_edge": size[1]})
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.proc = Idefics2Processor(image_processor=self.ip, tokenizer=tok, image_seq_len=IMAGE_SEQ_LEN,
                                      chat_template=CHAT_TEMPLATE)
        self.raw = Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
        self.pad_id = tok.pad_token_id

    def render(self, messages, gen):
        return self.proc.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)

    def ids(self, prompt):
        """Token ids of one prompt (placeholders not yet expanded)."""
        if self.compat == "transformers5":
            return self.proc(text=prompt)["input_ids"][0]
        image_str = FAKE + IMG * IMAGE_SEQ_LEN + FAKE
        if self.split:
            image_str *= 5
        return self.raw.encode(prompt.replace(IMG, image_str).replace(FAKE + FAKE, FAKE)).ids

    def labels(self, messages, ids, mode):
        if mode == "all":
            return [IGNORE if t == 32001 else t for t in ids]
        lab = [IGNORE] * len(ids)
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            start = self.ids(self.render(messages[:i], True))
            end_prompt = self.render(messages[:i + 1], False)
            assert end_prompt.endswith(EOU + "\n")
            end = self.ids(end_prompt[:-1])
            if ids[:len(start)] != start or ids[:len(end)] != end:
                sys.exit(f"prefix tokenization not stable around assistant turn {i}; pick another text")
            for k in range(len(start), len(end)):
                lab[k] = IGNORE if ids[k] == 32001 else ids[k]
        return lab

    def images(self, paths):
        from transformers.image_utils import load_image
        return [load_image(Image.open(p)) for p in paths]

    def run(self, samples, gen, label_mode):
        """samples: list of (messages, image paths). Returns prompts and the expected tensors."""
        prompts = [self.render(m, gen) for m, _ in samples]
        imgs = [self.images(p) for _, p in samples]
        any_images = any(imgs)
        if self.compat == "transformers5":
            out = self.proc(text=prompts, images=imgs if any_images else None, padding=True, return_tensors="np")
            input_ids, attn = out["input_ids"].astype(np.int64), out["attention_mask"].astype(np.int64)
            pix = out.get("pixel_values")
            pmask = out.get("pixel_attention_mask")
        else:
            seqs = [self.ids(p) for p in prompts]
            T_ = max(len(s) for s in seqs)
            input_ids = np.full((len(seqs), T_), self.pad_id, dtype=np.int64)
            attn = np.zeros((len(seqs), T_), dtype=np.int64)
            for b, s in enumerate(seqs):  # left padding: the tokenizer's padding side
                input_ids[b, T_ - len(s):] = s
                attn[b, T_ - len(s):] = 1
            pix = pmask = None
            if any_images:
                out = self.ip(imgs, return_tensors="np")
                pix, pmask = out["pixel_values"], out["pixel_attention_mask"]
        res = {"input_ids": input_ids, "attention_mask": attn}
        if pix is not None:
            res["pixel_values"] = np.ascontiguousarray(pix.astype(np.float32))
            res["pixel_attention_mask"] = np.ascontiguousarray(pmask.astype(np.int64))
        if label_mode:
            lab = np.full_like(input_ids, IGNORE)
            for b, (m, _) in enumerate(samples):
                row = [int(t) for t, a in zip(input_ids[b], attn[b]) if a]
                l = self.labels(m, row, label_mode)
                lab[b, input_ids.shape[1] - len(row):] = l
            res["labels"] = lab
        return prompts, res


IGNORE = -100


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def versions():
    import tokenizers
    import torch
    import transformers
    return {"transformers": transformers.__version__, "torch": torch.__version__, "pillow": PIL.__version__,
            "tokenizers": tokenizers.__version__, "numpy": np.__version__}


def dump_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def write_case(case, sources, out_root, tokenizer_dir, tokenizer_ref, max_bytes):
    from safetensors.numpy import save_file

    compat = case.get("compat", "trained")
    split = case.get("split", False)
    size = case.get("size", (980, 378))
    gen = case.get("gen", False)
    labels = case.get("labels")
    d = os.path.join(out_root, "processor-" + case["name"])
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    samples = case["batch"] if "batch" in case else [case]
    for s in samples:
        for name in s["images"]:
            with open(os.path.join(d, name), "wb") as f:
                f.write(sources[name])
    ref = Reference(tokenizer_dir, compat, split, size)
    prompts, res = ref.run([(s["messages"], [os.path.join(d, n) for n in s["images"]]) for s in samples], gen, labels)

    def sample_json(s):
        return {"messages": s["messages"], "images": s["images"]}
    cj = {"tokenizer": tokenizer_ref, "compat": compat, "add_generation_prompt": gen,
          "labels": labels, "padding_side": "left",
          "processor": {"do_image_splitting": split, "size": {"longest_edge": size[0], "shortest_edge": size[1]}}}
    if "batch" in case:
        cj["batch"] = [sample_json(s) for s in samples]
    else:
        cj.update(sample_json(case))
    dump_json(os.path.join(d, "case.json"), cj)
    with open(os.path.join(d, "expected_prompt.txt"), "w", encoding="utf-8", newline="") as f:
        f.write("\n---\n".join(prompts))
    stored = {k: v for k, v in res.items() if max_bytes == 0 or v.nbytes <= max_bytes}
    save_file(stored, os.path.join(d, "expected.safetensors"))
    notes = [f"case {case['name']}: compat={compat}, do_image_splitting={split}, size={size}, "
             f"labels={labels}, add_generation_prompt={gen}, batch={len(samples)}"]
    if len(stored) < len(res):
        notes.append("tensors " + ", ".join(sorted(set(res) - set(stored))) + " are stored only as sha256 "
                     "(meta.json sha256; little-endian bytes in C order); regenerate with --full for the arrays")
    dump_json(os.path.join(d, "meta.json"), {
        "kind": "processor",
        "reference": versions(),
        "image_processor_class": type(ref.ip).__name__,
        "processor_class": type(ref.proc).__name__,
        "tokenizer_class": type(ref.proc.tokenizer).__name__ if compat == "transformers5" else "tokenizers.Tokenizer (tokenizer.json as written)",
        "atol": 0, "rtol": 0,
        "shapes": {k: list(v.shape) for k, v in res.items()},
        "sha256": {k: sha(v) for k, v in res.items()},
        "notes": "; ".join(notes),
    })
    print(f"{d}: {', '.join(f'{k}{list(v.shape)}' for k, v in res.items())}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "testdata", "fixtures"))
    ap.add_argument("--pillow-out", default=os.path.join(ROOT, "testdata", "pillow"))
    ap.add_argument("--tokenizer", default=DEFAULT_TOKENIZER)
    ap.add_argument("--max-tensor-bytes", type=int, default=96 * 1024)
    ap.add_argument("--full", action="store_true", help="store every tensor (no sha256-only tensors)")
    ap.add_argument("--only", help="comma-separated case names")
    args = ap.parse_args()
    max_bytes = 0 if args.full else args.max_tensor_bytes

    os.makedirs(args.out, exist_ok=True)
    tok_dir = os.path.abspath(args.tokenizer)
    if os.path.abspath(args.out) == os.path.abspath(os.path.join(ROOT, "testdata", "fixtures")):
        tok_ref = os.path.relpath(tok_dir, os.path.join(args.out, "processor-x"))
    else:  # out-of-tree roots carry their own copy next to the cases
        tok_ref = "../tokenizer-idefics2"
        shutil.copytree(tok_dir, os.path.join(args.out, "tokenizer-idefics2"), dirs_exist_ok=True)
    if args.pillow_out:
        write_pillow_checks(args.pillow_out, max_bytes)
    sources = build_sources()
    only = set(args.only.split(",")) if args.only else None
    for case in CASES:
        if only is None or case["name"] in only:
            write_case(case, sources, args.out, tok_dir, tok_ref, max_bytes)


if __name__ == "__main__":
    main()
