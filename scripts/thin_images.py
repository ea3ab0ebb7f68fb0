"""What HF's Idefics2 image processor does with images 1 or 2 pixels wide or high, with image
splitting on: prints, per image, the first 16 hex digits of the sha256 of each uint8 crop it
produces (or the exception it raises). data/thin_test.go holds the output.

    .venv/bin/python scripts/thin_images.py
"""
import hashlib

import numpy as np
from PIL import Image
from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil


def main():
    proc = Idefics2ImageProcessorPil(do_image_splitting=True)
    for w, h in [(1, 50), (1, 2), (2, 2), (3, 2), (50, 1), (1, 1), (2, 1)]:
        arr = ((np.arange(w * h * 3).reshape(h, w, 3) * 37 + 11) % 256).astype(np.uint8)
        try:
            pv = proc([[Image.fromarray(arr)]], return_tensors="np")["pixel_values"][0]
        except Exception as e:  # noqa: BLE001 - the exception is the answer
            print(f"{w}x{h}: {type(e).__name__}: {e}")
            continue
        crops = []
        for c in pv:
            u8 = np.rint((c.transpose(1, 2, 0) * 0.5 + 0.5) * 255).astype(np.uint8)
            crops.append(f"{hashlib.sha256(u8.tobytes()).hexdigest()[:16]} {u8.shape[1]}x{u8.shape[0]}")
        print(f"{w}x{h}: {crops}")


if __name__ == "__main__":
    main()
