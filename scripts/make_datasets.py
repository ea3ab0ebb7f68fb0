#!/usr/bin/env python3
"""Write small parquet shards in the exact schemas of The Cauldron and lmms-lab's eval sets.

The shards are written by HF `datasets` itself (Features with the Image feature, `to_parquet`), so
they carry the same Arrow schema and the same `huggingface` schema metadata that the hub's files
carry. Images are real PNG/JPEG files encoded by Pillow (text pages, shapes, synthetic photos).

Two uses:

    # the committed fixtures under testdata/datasets (re-running reproduces them byte for byte
    # with the pinned versions in scripts/requirements.txt)
    python scripts/make_datasets.py --out testdata/datasets

    # large shards for the side-by-side benchmark (not committed)
    python scripts/make_datasets.py --bench /tmp/cauldron-bench --bench-rows 2000

Besides the shards, `expected.json` records what a reader must return for every row of every
committed file (image digests, texts, ids, and the skip reason of each bad row); the Go tests
compare against it, so the fixtures and the test cannot drift apart.
"""

import argparse
import hashlib
import io
import json
import math
import os
import random
import shutil
import sys

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import PIL
from datasets import Dataset, Features, Image, List, Value
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

CAULDRON_FEATURES = Features(
    {
        "images": List(Image()),
        "texts": List(
            {
                "user": Value("string"),
                "assistant": Value("string"),
                "source": Value("string"),
            }
        ),
    }
)

# lmms-lab/DocVQA, config DocVQA (dataset card of the hub repo).
DOCVQA_FEATURES = Features(
    {
        "questionId": Value("string"),
        "question": Value("string"),
        "question_types": List(Value("string")),
        "image": Image(),
        "docId": Value("int64"),
        "ucsf_document_id": Value("string"),
        "ucsf_document_page_no": Value("string"),
        "answers": List(Value("string")),
        "data_split": Value("string"),
    }
)

# lmms-lab/textvqa (dataset card of the hub repo).
TEXTVQA_FEATURES = Features(
    {
        "image_id": Value("string"),
        "question_id": Value("int32"),
        "question": Value("string"),
        "question_tokens": List(Value("string")),
        "image": Image(),
        "image_width": Value("int32"),
        "image_height": Value("int32"),
        "flickr_original_url": Value("string"),
        "flickr_300k_url": Value("string"),
        "answers": List(Value("string")),
        "image_classes": List(Value("string")),
        "set_name": Value("string"),
        "ocr_tokens": List(Value("string")),
    }
)

# A custom dataset in HF chat format: one list of images and a list of messages whose content
# items are {"type": "image"} or {"type": "text", "text": ...}.
MESSAGES_FEATURES = Features(
    {
        "images": List(Image()),
        "messages": List(
            {
                "role": Value("string"),
                "content": List({"type": Value("string"), "text": Value("string")}),
            }
        ),
    }
)

# A custom question/answer dataset with one image per row.
QA_FEATURES = Features(
    {
        "id": Value("string"),
        "image": Image(),
        "question": Value("string"),
        "answer": Value("string"),
    }
)

FONT = ImageFont.load_default(size=12)
BIG_FONT = ImageFont.load_default(size=18)


# ----------------------------------------------------------------------------- images


def encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def text_page(lines, size=(160, 200)):
    """A document page: black text on white, grayscale, like DocVQA scans."""
    img = PILImage.new("L", size, 255)
    d = ImageDraw.Draw(img)
    y = 8
    for ln in lines:
        d.text((8, y), ln, fill=0, font=FONT)
        y += 16
    d.rectangle([4, 4, size[0] - 5, size[1] - 5], outline=96)
    return img


SHAPES = ["circle", "square", "triangle", "diamond"]
COLORS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 70, 220), "yellow": (230, 200, 20)}


def shape_image(shape, color, size=48):
    img = PILImage.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    m = size // 6
    box = [m, m, size - m, size - m]
    c = COLORS[color]
    if shape == "circle":
        d.ellipse(box, fill=c)
    elif shape == "square":
        d.rectangle(box, fill=c)
    elif shape == "triangle":
        d.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=c)
    else:
        d.polygon([(size // 2, m), (size - m, size // 2), (size // 2, size - m), (m, size // 2)], fill=c)
    return img


def photo(rng, w, h):
    """A smooth synthetic scene (sky gradient, ground, a few blobs): compresses like a photo."""
    y = np.linspace(0.0, 1.0, h)[:, None]
    x = np.linspace(0.0, 1.0, w)[None, :]
    base = np.stack(
        [
            120 + 100 * y + 20 * np.sin(6 * x + rng.random()),
            150 + 60 * y + 0 * x,
            230 - 120 * y + 10 * np.cos(5 * x),
        ],
        axis=-1,
    )
    img = PILImage.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    d.rectangle([0, int(h * 0.7), w, h], fill=(90, 120, 60))
    for _ in range(3):
        cx, cy, r = rng.randrange(w), rng.randrange(h), rng.randrange(4, max(5, w // 5))
        col = tuple(rng.randrange(256) for _ in range(3))
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
    return img


# ----------------------------------------------------------------------------- writing


def write(rows, features, path, row_group_rows=None):
    """Write rows with HF datasets, the way `push_to_hub`/`to_parquet` write hub shards."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds = Dataset.from_list(rows, features=features)
    kw = {}
    if row_group_rows:
        kw["batch_size"] = row_group_rows
    ds.to_parquet(path, **kw)
    return path


def shard_name(split, i, n, tag):
    """Hub shard names of The Cauldron: train-00000-of-00012-<16 hex>.parquet."""
    h = hashlib.sha256(f"{tag}/{i}".encode()).hexdigest()[:16]
    return f"{split}-{i:05d}-of-{n:05d}-{h}.parquet"


def img_entry(b, path=None):
    return {"bytes": b, "path": path}


def digest(b):
    return None if b is None else hashlib.sha256(b).hexdigest()


# ----------------------------------------------------------------------------- subsets


def tiny_shapes_rows():
    """32 rows a tiny model can overfit: one 48 px shape, a short question, a one-word answer."""
    rows = []
    combos = [(s, c) for s in SHAPES for c in COLORS]  # 16 combos
    for i in range(32):
        shape, color = combos[i % 16]
        img = shape_image(shape, color)
        if i < 16:
            q, a = "What shape is this?\nAnswer briefly.", shape.capitalize() + "."
        else:
            q, a = "What color is the shape?\nAnswer briefly.", color.capitalize() + "."
        texts = [{"user": q, "assistant": a, "source": "tiny_shapes"}]
        if i % 8 == 7:  # a few multi-turn conversations, as in The Cauldron
            texts.append({"user": "Is the background white?", "assistant": "Yes.", "source": "tiny_shapes"})
        rows.append({"images": [img_entry(encode(img, "PNG"))], "texts": texts})
    return rows


DOC_FACTS = [
    ("INVOICE", "Total: $78", "What is the total?", "78."),
    ("MEMO", "Date: 03/17/98", "What is the date?", "03/17/98."),
    ("REPORT", "Page 4 of 9", "How many pages?", "9."),
    ("LETTER", "From: R. Smith", "Who sent the letter?", "R. Smith."),
    ("FORM", "Item: existing", "Is it an existing item?", "Yes."),
    ("RECEIPT", "Tax: 1.20", "What is the tax?", "1.20."),
    ("MINUTES", "Room 301", "Which room?", "301."),
    ("BUDGET", "Year 1997", "Which year?", "1997."),
]


def docvqa_rows(start, n):
    rows = []
    for i in range(start, start + n):
        title, fact, q, a = DOC_FACTS[i % len(DOC_FACTS)]
        page = text_page([title, "", fact, "ref %04d" % (i * 37 % 9973), "tobacco records"])
        texts = [
            {"user": q + "\nGive a very brief answer.", "assistant": a, "source": "docvqa"},
            {"user": "What is the title?\nGive a very brief answer.", "assistant": title.capitalize() + ".", "source": "docvqa"},
        ]
        path = f"page_{i:04d}.png" if i % 3 == 0 else None
        rows.append({"images": [img_entry(encode(page, "PNG"), path)], "texts": texts})
    return rows


def nlvr2_rows(rng, n):
    """Two images per row, JPEG, as in nlvr2 / spot_the_diff."""
    rows = []
    for i in range(n):
        a, b = photo(rng, 80, 56), photo(rng, 80, 56)
        ans = "True." if i % 2 == 0 else "False."
        texts = [{"user": "The left image contains more circles than the right image.\nTrue or false?", "assistant": ans, "source": "nlvr2"}]
        rows.append({"images": [img_entry(encode(a, "JPEG", quality=85)), img_entry(encode(b, "JPEG", quality=85))], "texts": texts})
    return rows


def broken_rows(rng):
    """One row per bad-record kind, between good rows; `expect` is the reader's verdict."""
    good = lambda k: {
        "images": [img_entry(encode(shape_image(SHAPES[k % 4], "red"), "PNG"))],
        "texts": [{"user": "What shape is this?", "assistant": SHAPES[k % 4].capitalize() + ".", "source": "broken"}],
    }
    rows, expect = [], []

    def add(row, reason):
        rows.append(row)
        expect.append(reason)

    add(good(0), None)
    add({"images": None, "texts": good(1)["texts"]}, "null_field")
    add({"images": good(2)["images"], "texts": []}, "empty_field")
    add({"images": good(3)["images"], "texts": [{"user": "Shape?", "assistant": None, "source": "broken"}]}, "null_field")
    add({"images": [img_entry(b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(64)))], "texts": good(4)["texts"]}, "bad_image")
    add({"images": good(5)["images"], "texts": [{"user": "<image><image>Compare them.", "assistant": "Same.", "source": "broken"}]}, "image_count_mismatch")
    add({"images": [], "texts": good(6)["texts"]}, "empty_field")
    add({"images": [img_entry(None, None)], "texts": good(7)["texts"]}, "null_field")
    add({"images": good(8)["images"], "texts": [{"user": "", "assistant": "Circle.", "source": "broken"}]}, "empty_field")
    add(good(9), None)
    return rows, expect


def docvqa_eval_rows(n):
    rows = []
    for i in range(n):
        title, fact, q, a = DOC_FACTS[i % len(DOC_FACTS)]
        page = text_page([title, fact, "doc %d" % (1000 + i)], size=(180, 120))
        answers = [a.rstrip("."), a.rstrip(".").lower()] if i % 2 == 0 else [a.rstrip(".")]
        rows.append(
            {
                "questionId": str(50000 + i),
                "question": q,
                "question_types": ["form"] if i % 2 else ["layout", "figure/diagram"],
                "image": img_entry(encode(page, "PNG")),
                "docId": 1000 + i,
                "ucsf_document_id": "xnbl%04d" % i,
                "ucsf_document_page_no": str(1 + i % 3),
                "answers": answers,
                "data_split": "val",
            }
        )
    return rows


def textvqa_eval_rows(rng, n):
    rows = []
    words = ["stop", "coca cola", "12", "exit", "nokia", "sale"]
    for i in range(n):
        img = photo(rng, 96, 64)
        d = ImageDraw.Draw(img)
        word = words[i % len(words)]
        d.text((6, 6), word.upper(), fill=(255, 255, 255), font=BIG_FONT)
        q = "what does the sign say?"
        answers = [word] * 7 + [word.upper(), "unanswerable", word + " sign"]
        rows.append(
            {
                "image_id": "%016x" % (0xABC000 + i),
                "question_id": 34602 + i,
                "question": q,
                "question_tokens": q.rstrip("?").split() + ["?"],
                "image": img_entry(encode(img, "JPEG", quality=90)),
                "image_width": img.width,
                "image_height": img.height,
                "flickr_original_url": "https://example.org/%d_o.jpg" % i,
                "flickr_300k_url": "https://example.org/%d_z.jpg" % i,
                "answers": answers,
                "image_classes": ["Street light", "Sign"],
                "set_name": "val",
                "ocr_tokens": word.upper().split(),
            }
        )
    return rows


def messages_rows():
    rows = []
    for i in range(4):
        shape, color = SHAPES[i], list(COLORS)[i]
        imgs = [img_entry(encode(shape_image(shape, color, 40), "PNG"))]
        content = [{"type": "image", "text": None}, {"type": "text", "text": "Describe the picture."}]
        if i == 3:  # two images, the second one placed mid-text
            imgs.append(img_entry(encode(shape_image("circle", "blue", 40), "PNG")))
            content = [{"type": "text", "text": "First:"}, {"type": "image", "text": None}, {"type": "text", "text": "Second:"}, {"type": "image", "text": None}]
        rows.append(
            {
                "images": imgs,
                "messages": [
                    {"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]} if i == 2 else None,
                    {"role": "user", "content": content},
                    {"role": "assistant", "content": [{"type": "text", "text": f"A {color} {shape}."}]},
                ],
            }
        )
        rows[-1]["messages"] = [m for m in rows[-1]["messages"] if m is not None]
    return rows


def qa_rows():
    rows = []
    for i in range(4):
        shape, color = SHAPES[(i + 1) % 4], list(COLORS)[(i + 2) % 4]
        rows.append({"id": f"qa-{i}", "image": img_entry(encode(shape_image(shape, color, 32), "PNG"), f"qa_{i}.png"), "question": "Which shape?", "answer": shape.capitalize() + "."})
    return rows


# ----------------------------------------------------------------------------- expected values


def expect_cauldron(rows, reasons=None):
    out = []
    for i, r in enumerate(rows):
        e = {"row": i}
        if reasons and reasons[i]:
            e["skip"] = reasons[i]
        else:
            e["images"] = [{"sha256": digest(im["bytes"]), "len": len(im["bytes"]), "path": im["path"]} for im in r["images"]]
            e["texts"] = r["texts"]
        out.append(e)
    return out


def expect_eval(rows, id_key, image_key="image"):
    return [
        {
            "row": i,
            "id": str(r[id_key]),
            "question": r["question"],
            "answers": r["answers"],
            "images": [{"sha256": digest(r[image_key]["bytes"]), "len": len(r[image_key]["bytes"]), "path": r[image_key]["path"]}],
        }
        for i, r in enumerate(rows)
    ]


# ----------------------------------------------------------------------------- main


def make_fixtures(out):
    if os.path.isdir(out):
        for name in ("the_cauldron", "lmms-lab", "custom", "bad"):
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)
    rng = random.Random(1234)
    expected = {}

    def rel(p):
        return os.path.relpath(p, out)

    c = os.path.join(out, "the_cauldron")
    rows = tiny_shapes_rows()
    p = write(rows, CAULDRON_FEATURES, os.path.join(c, "tiny_shapes", shard_name("train", 0, 1, "tiny_shapes")), row_group_rows=8)
    expected[rel(p)] = {"kind": "cauldron", "rows": expect_cauldron(rows)}

    for i in range(2):
        rows = docvqa_rows(i * 5, 5)
        p = write(rows, CAULDRON_FEATURES, os.path.join(c, "docvqa", shard_name("train", i, 2, "docvqa")))
        expected[rel(p)] = {"kind": "cauldron", "rows": expect_cauldron(rows)}

    rows = nlvr2_rows(rng, 6)
    p = write(rows, CAULDRON_FEATURES, os.path.join(c, "nlvr2", shard_name("train", 0, 1, "nlvr2")), row_group_rows=4)
    expected[rel(p)] = {"kind": "cauldron", "rows": expect_cauldron(rows)}

    rows = docvqa_eval_rows(6)
    p = write(rows, DOCVQA_FEATURES, os.path.join(out, "lmms-lab", "DocVQA", "DocVQA", "validation-00000-of-00001.parquet"))
    expected[rel(p)] = {"kind": "docvqa", "rows": expect_eval(rows, "questionId")}

    rows = textvqa_eval_rows(rng, 6)
    p = write(rows, TEXTVQA_FEATURES, os.path.join(out, "lmms-lab", "textvqa", "data", "validation-00000-of-00001.parquet"))
    expected[rel(p)] = {"kind": "textvqa", "rows": expect_eval(rows, "question_id")}

    rows = messages_rows()
    p = write(rows, MESSAGES_FEATURES, os.path.join(out, "custom", "messages.parquet"))
    expected[rel(p)] = {"kind": "messages", "rows": [{"row": i, "images": [{"sha256": digest(im["bytes"]), "len": len(im["bytes"]), "path": im["path"]} for im in r["images"]], "messages": r["messages"]} for i, r in enumerate(rows)]}

    rows = qa_rows()
    p = write(rows, QA_FEATURES, os.path.join(out, "custom", "qa.parquet"))
    expected[rel(p)] = {
        "kind": "qa",
        "rows": [{"row": i, "id": r["id"], "question": r["question"], "answers": [r["answer"]], "images": [{"sha256": digest(r["image"]["bytes"]), "len": len(r["image"]["bytes"]), "path": r["image"]["path"]}]} for i, r in enumerate(rows)],
    }

    # JSONL with image files next to it (paths relative to the JSONL file).
    jdir = os.path.join(out, "custom", "jsonl")
    os.makedirs(os.path.join(jdir, "images"), exist_ok=True)
    jrows, jexp = [], []
    for i in range(3):
        b = encode(shape_image(SHAPES[i], list(COLORS)[i], 32), "PNG")
        name = f"images/shape_{i}.png"
        with open(os.path.join(jdir, name), "wb") as f:
            f.write(b)
        if i < 2:
            jrows.append({"image": name, "question": "Which shape?", "answer": SHAPES[i].capitalize() + "."})
        else:
            jrows.append({"images": [name], "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which shape?"}]}, {"role": "assistant", "content": [{"type": "text", "text": SHAPES[i].capitalize() + "."}]}]})
        jexp.append({"row": i, "images": [{"sha256": digest(b), "len": len(b), "path": name}]})
    p = os.path.join(jdir, "train.jsonl")
    with open(p, "w") as f:
        for r in jrows:
            f.write(json.dumps(r) + "\n")
    expected[rel(p)] = {"kind": "jsonl", "rows": jexp}

    # Bad records, a truncated file and a file of another schema.
    b = os.path.join(out, "bad")
    rows, reasons = broken_rows(rng)
    p = write(rows, CAULDRON_FEATURES, os.path.join(b, "broken", shard_name("train", 0, 1, "broken")), row_group_rows=5)
    expected[rel(p)] = {"kind": "cauldron", "rows": expect_cauldron(rows, reasons)}

    good = open(os.path.join(c, "docvqa", shard_name("train", 0, 2, "docvqa")), "rb").read()
    os.makedirs(os.path.join(b, "truncated"), exist_ok=True)
    p = os.path.join(b, "truncated", shard_name("train", 0, 1, "truncated"))
    with open(p, "wb") as f:
        f.write(good[: len(good) // 2])
    expected[rel(p)] = {"kind": "cauldron", "truncated": True}

    rows = [{"image": img_entry(encode(shape_image("square", "red", 16), "PNG")), "text": "a square"}]
    p = write(rows, Features({"image": Image(), "text": Value("string")}), os.path.join(b, "wrong_schema", shard_name("train", 0, 1, "wrong")))
    expected[rel(p)] = {"kind": "cauldron", "schema_error": True}

    meta = {
        "written_by": "scripts/make_datasets.py",
        "versions": {"datasets": datasets.__version__, "pyarrow": pa.__version__, "pillow": PIL.__version__, "numpy": np.__version__},
        "files": expected,
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(out) for fn in fns)
    print(f"wrote {len(expected)} files under {out}, {total / 1e6:.2f} MB in total")


def make_bench(out, n_rows, n_shards):
    """Shards with realistic image sizes (document pages and photos) for throughput comparisons.

    100 rows per row group, like the hub's Cauldron shards written by datasets 2.x.
    """
    rng = random.Random(99)
    per = math.ceil(n_rows / n_shards)
    for s in range(n_shards):
        rows = []
        for i in range(s * per, min(n_rows, (s + 1) * per)):
            if i % 2 == 0:
                page = text_page(["REPORT %d" % i] + ["line %d of the running text, 1997 budget" % k for k in range(30)], size=(640, 520))
                img = encode(page, "PNG")
            else:
                img = encode(photo(rng, 640, 480), "JPEG", quality=90)
            rows.append({"images": [img_entry(img)], "texts": [{"user": "What is shown?\nAnswer briefly.", "assistant": "A page.", "source": "bench"}]})
        write(rows, CAULDRON_FEATURES, os.path.join(out, "bench", shard_name("train", s, n_shards, "bench")), row_group_rows=100)
    print(f"wrote {n_rows} rows in {n_shards} shards under {out}/bench")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="fixture root, e.g. testdata/datasets")
    ap.add_argument("--bench", help="write benchmark shards under this directory instead")
    ap.add_argument("--bench-rows", type=int, default=2000)
    ap.add_argument("--bench-shards", type=int, default=2)
    a = ap.parse_args()
    datasets.disable_progress_bars()
    if a.bench:
        make_bench(a.bench, a.bench_rows, a.bench_shards)
    elif a.out:
        make_fixtures(a.out)
    else:
        ap.error("give --out or --bench")


if __name__ == "__main__":
    sys.exit(main())
