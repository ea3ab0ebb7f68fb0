#!/usr/bin/env python3
"""Python side of the cauldron read benchmark: pyarrow + Pillow on the same shards.

Two passes over Cauldron-layout parquet shards, row group by row group (pyarrow):
"read" turns rows into Python records (to_pylist), as HF datasets hands them out; "decode"
also opens every image with Pillow and converts it to RGB, the way an HF training script's
collator starts. With --processor the decode pass also runs HF's Idefics2ImageProcessor
(do_image_splitting=False), when transformers is importable. Prints one JSON object:
{"read": {records, seconds, records_per_sec}, "decode": {...}}.

    python scripts/bench_cauldron.py /tmp/cauldron-bench/bench
The Go side (go test -bench Pipeline ./cauldron) runs this itself and prints the ratio.
"""

import argparse
import glob
import io
import json
import os
import sys
import time

import pyarrow.parquet as pq
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", help="folder of Cauldron-layout .parquet shards")
    ap.add_argument("--processor", action="store_true", help="also run Idefics2ImageProcessor")
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.dir, "**", "*.parquet"), recursive=True))
    if not files:
        sys.exit(f"no parquet files under {a.dir}")
    proc = None
    if a.processor:
        from transformers import Idefics2ImageProcessor

        proc = Idefics2ImageProcessor(do_image_splitting=False)
    out = {}
    for mode in ("read", "decode"):
        n = 0
        t0 = time.perf_counter()
        for f in files:
            pf = pq.ParquetFile(f)
            for g in range(pf.num_row_groups):
                rows = pf.read_row_group(g, columns=["images", "texts"]).to_pylist()
                for r in rows:
                    if mode == "decode":
                        imgs = [Image.open(io.BytesIO(im["bytes"])).convert("RGB") for im in r["images"]]
                        if proc is not None:
                            proc(imgs, return_tensors="np")
                    n += 1
        dt = time.perf_counter() - t0
        out[mode] = {"records": n, "seconds": round(dt, 3), "records_per_sec": round(n / dt, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
