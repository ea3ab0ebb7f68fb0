#!/usr/bin/env python3
"""Rebuild the Idefics2 tokenizer (Mistral-7B-v0.1 SentencePiece BPE + 3 added tokens) offline.

The model hub is not reachable from where this project is built, so the tokenizer files are
reconstructed from the npm package `mistral-tokenizer-js@1.0.0` (MIT), which embeds the real
Mistral v0.1 vocabulary (32,000 pieces, id order) and its BPE merges (in priority order), plus
test cases with ids produced by the real tokenizer.

The output mirrors the hub's idefics2-8b tokenizer files (spec idefics2.md §1.4):
  tokenizer.json          BPE with byte_fallback; normalizer Prepend("▁") + Replace(" ", "▁");
                          no pre-tokenizer; <s> prepended by the post-processor; decoder
                          Replace("▁"," ") + ByteFallback + Fuse + Strip(1 leading space);
                          added special tokens <fake_token_around_image>=32000, <image>=32001,
                          <end_of_utterance>=32002 (normalized=false).
  tokenizer_config.json, special_tokens_map.json, added_tokens.json, provenance.json

Checks before writing: every test case of the npm package (ids of the real tokenizer), encoded
with the Python `tokenizers` library; 500 generated strings encoded by both the Python
`tokenizers` library and the npm package's own encoder (node); and 2000 generated strings
encoded by the C++ `sentencepiece` library over a model proto with the same pieces. All must
give identical ids.

Usage: scripts/make_tokenizer.py --out testdata/tokenizer/idefics2 [--js path/to/mistral-tokenizer.js]
"""

import argparse
import base64
import hashlib
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile

NPM_PACKAGE = "mistral-tokenizer-js@1.0.0"
ADDED = [("<fake_token_around_image>", 32000), ("<image>", 32001), ("<end_of_utterance>", 32002)]
SP = "\u2581"  # SentencePiece's word-boundary marker "▁"


def fetch_js(workdir):
    """npm pack the package (registry tarball, no install scripts run) and return the JS path."""
    subprocess.run(["npm", "pack", NPM_PACKAGE, "--silent"], cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    tgz = [f for f in os.listdir(workdir) if f.endswith(".tgz")][0]
    subprocess.run(["tar", "xzf", tgz], cwd=workdir, check=True)
    return os.path.join(workdir, "package", "mistral-tokenizer.js")


def js_string_constant(src, name):
    m = re.search(r'const %s = "([^"]*)"' % name, src)
    if not m:
        sys.exit(f"{name} not found in the JS file")
    return m.group(1)


def parse_js(path):
    src = open(path, encoding="utf-8").read()
    vocab = base64.b64decode(js_string_constant(src, "vocab_base64")).decode("utf-8").split("\n")
    packed = base64.b64decode(js_string_constant(src, "merges_binary"))
    ids = struct.unpack("<%dH" % (len(packed) // 2), packed)
    merges = [f"{vocab[ids[i]]} {vocab[ids[i + 1]]}" for i in range(0, len(ids), 2)]
    # Test cases: testCase("input", [ids]) with JS string escapes; the inputs use only \n and \t
    # escapes and literal characters, which json.loads understands once quotes are normalised.
    cases = []
    for m in re.finditer(r'testCase\((["\'])((?:\\.|(?!\1).)*)\1,\s*\[([0-9,\s]*)\]\)', src, re.S):
        text = json.loads('"' + m.group(2).replace("\\'", "'") + '"', strict=False)
        cases.append((text, [int(x) for x in m.group(3).replace("\n", " ").split(",") if x.strip()]))
    return src, vocab, merges, cases


def build_tokenizer_json(vocab, merges):
    special = {"<unk>": 0, "<s>": 1, "</s>": 2}
    added = [dict(id=i, content=t, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
             for t, i in list(special.items()) + ADDED]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SP},
            {"type": "Replace", "pattern": {"String": " "}, "content": SP},
        ]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SP}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": {p: i for i, p in enumerate(vocab)},
            "merges": merges,
        },
    }


def tokenizer_config():
    def tok(content, special=True):
        return dict(content=content, lstrip=False, normalized=False, rstrip=False, single_word=False, special=special)
    decoder = {"0": tok("<unk>"), "1": tok("<s>"), "2": tok("</s>")}
    for t, i in ADDED:
        decoder[str(i)] = tok(t)
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": [t for t, _ in ADDED],
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "do_image_splitting": False,
        "eos_token": "</s>",
        "legacy": False,
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": "<unk>",
        "processor_class": "Idefics2Processor",
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }


def sample_strings(rng, n):
    """Varied text: words, digits, punctuation, runs of spaces, tabs/newlines, non-Latin and emoji."""
    words = ("the a of image what is shown in this picture answer briefly chart table page total revenue "
             "grabbed llama Mistral Idefics2 DocVQA question 1999 3.14 $42.00 e-mail don't you're").split()
    extra = ["镇", "東京", "naïve", "façade", "Ελληνικά", "русский", "עברית", "العربية", "हिन्दी", "🦙", "🙂",
             "👍🏽", "Ꙋ", "∑", "—", "…", "«»", "\u00a0", "\u200b", "ß", "ﬁ", "Å", "Å"]
    seps = [" ", "  ", "   ", "\n", "\n\n", "\t", " \n", "", ", ", ". ", "? ", ": "]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            parts.append(rng.choice(words) if rng.random() < 0.8 else rng.choice(extra))
            parts.append(rng.choice(seps))
        s = "".join(parts)
        if rng.random() < 0.2:
            s = rng.choice([" ", "  ", "\n"]) + s
        out.append(s)
    return out


def js_encode(js_path, texts):
    driver = (
        "import t from %s;\n"
        "import fs from 'fs';\n"
        "const xs = JSON.parse(fs.readFileSync(0, 'utf8'));\n"
        "process.stdout.write(JSON.stringify(xs.map(x => t.encode(x))));\n" % json.dumps(os.path.abspath(js_path)))
    with tempfile.NamedTemporaryFile("w", suffix=".mjs", delete=False) as f:
        f.write(driver)
    try:
        r = subprocess.run(["node", f.name], input=json.dumps(texts), capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    return json.loads(r.stdout)


def sentencepiece_model(vocab, merges):
    """A SentencePiece BPE model proto over the same pieces, for a cross-check with the C++
    sentencepiece encoder. The real tokenizer.model is not reachable offline, so each piece's
    score is minus the rank of the first merge that produces it (SentencePiece merges by the
    score of the resulting piece; HF's converter derived the merge order from those scores)."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    rank = {}
    for r, m in enumerate(merges):
        a, b = m.split(" ")
        rank.setdefault(a + b, r)
    mp = pb.ModelProto()
    mp.trainer_spec.model_type = pb.TrainerSpec.BPE
    mp.trainer_spec.byte_fallback = True
    mp.trainer_spec.vocab_size = len(vocab)
    mp.normalizer_spec.name = "identity"
    mp.normalizer_spec.add_dummy_prefix = True
    mp.normalizer_spec.remove_extra_whitespaces = False
    mp.normalizer_spec.escape_whitespaces = True
    P = pb.ModelProto.SentencePiece
    for i, piece in enumerate(vocab):
        p = mp.pieces.add()
        p.piece = piece
        if i == 0:
            p.type = P.UNKNOWN
        elif i < 3:
            p.type = P.CONTROL
        elif i < 259:
            p.type = P.BYTE
        else:
            p.type = P.NORMAL
            p.score = -float(rank.get(piece, 100000 + i))
    return mp.SerializeToString()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--js", help="path to mistral-tokenizer.js (default: npm pack %s)" % NPM_PACKAGE)
    ap.add_argument("--compare", type=int, default=500, help="generated strings compared with the npm encoder")
    args = ap.parse_args()

    from tokenizers import Tokenizer

    with tempfile.TemporaryDirectory() as work:
        js = args.js or fetch_js(work)
        src, vocab, merges, cases = parse_js(js)
        if len(vocab) != 32000 or len(set(vocab)) != 32000:
            sys.exit(f"expected 32000 distinct pieces, got {len(vocab)} ({len(set(vocab))} distinct)")
        tj = build_tokenizer_json(vocab, merges)
        tok = Tokenizer.from_str(json.dumps(tj, ensure_ascii=False))

        bad = 0
        for text, want in cases:
            got = tok.encode(text).ids
            if got != want:
                bad += 1
                print(f"MISMATCH on npm test case {text[:40]!r}: {got[:12]} vs {want[:12]}", file=sys.stderr)
        texts = sample_strings(random.Random(0), args.compare)
        js_ids = js_encode(js, texts) if args.compare else []
        diff = 0
        for text, want in zip(texts, js_ids):
            got = tok.encode(text).ids
            if got != want:
                diff += 1
                print(f"DIFF vs npm encoder on {text!r}: {got} vs {want}", file=sys.stderr)
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_proto=sentencepiece_model(vocab, merges))
        sp_texts = sample_strings(random.Random(1), 2000)
        sp_diff = 0
        for text in sp_texts:
            want = [1] + sp.encode(text)
            if tok.encode(text).ids != want:
                sp_diff += 1
                print(f"DIFF vs sentencepiece on {text!r}", file=sys.stderr)
        for text, want in cases:
            if [1] + sp.encode(text) != want:
                sp_diff += 1
                print(f"sentencepiece model disagrees with npm test case {text[:40]!r}", file=sys.stderr)
        # Added tokens must be split out and never normalised.
        special = tok.encode("User:<image>What?<end_of_utterance>").ids
        if special[0] != 1 or 32001 not in special or special[-1] != 32002:
            sys.exit(f"added tokens not recognised: {special}")
        print(f"npm test cases: {len(cases) - bad}/{len(cases)} identical; generated strings: "
              f"{len(texts) - diff}/{len(texts)} identical to the npm encoder; "
              f"{len(sp_texts) - sp_diff}/{len(sp_texts)} identical to sentencepiece")
        if bad or diff or sp_diff:
            sys.exit("tokenizer does not reproduce the reference ids; nothing written")
        js_sha = hashlib.sha256(open(js, "rb").read()).hexdigest()

    import tokenizers as tk_mod
    os.makedirs(args.out, exist_ok=True)

    def dump(name, obj):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=2 if name.endswith("config.json") or name in (
                "special_tokens_map.json", "added_tokens.json", "provenance.json") else None)
            f.write("\n")

    dump("tokenizer.json", tj)
    dump("tokenizer_config.json", tokenizer_config())
    dump("special_tokens_map.json", {
        "additional_special_tokens": [t for t, _ in ADDED],
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>"})
    dump("added_tokens.json", {t: i for t, i in ADDED})
    dump("provenance.json", {
        "what": "Idefics2 tokenizer: Mistral-7B-v0.1 SentencePiece BPE (32000 pieces, byte fallback) + 3 added special tokens",
        "source": f"npm {NPM_PACKAGE} (MIT), file mistral-tokenizer.js, sha256 {js_sha}",
        "built_by": "scripts/make_tokenizer.py",
        "python_tokenizers": tk_mod.__version__,
        "checks": {"npm_test_cases": len(cases), "npm_test_cases_identical": len(cases),
                   "generated_strings_vs_npm_encoder": len(texts), "identical": len(texts),
                   "generated_strings_vs_sentencepiece": len(sp_texts), "sentencepiece_identical": len(sp_texts),
                   "sentencepiece_note": "SentencePiece BPE proto over the same pieces, scores from merge ranks "
                                         "(the real tokenizer.model is not reachable offline)"},
        "layout": "mirrors the hub idefics2-8b tokenizer.json (legacy Llama style: Prepend+Replace normalizer, no pre-tokenizer)",
    })
    # Reference encodings for the Go tests: the npm test cases (real ids) and the generated
    # strings, with the ids of the file's own pipeline and of transformers 5's LlamaTokenizer.
    from transformers import AutoTokenizer
    t5 = AutoTokenizer.from_pretrained(args.out)
    ref = [{"text": t, "ids": w, "ids_transformers5": t5(t)["input_ids"], "from": "npm test case"} for t, w in cases]
    ref += [{"text": t, "ids": w, "ids_transformers5": t5(t)["input_ids"], "from": "generated, npm encoder"}
            for t, w in zip(texts, js_ids)]
    dump("reference_encodings.json", {"notes": "ids include BOS; 'ids' = tokenizer.json as written (== the npm "
                                      "encoder and the real tokenizer's test ids); 'ids_transformers5' = "
                                      "AutoTokenizer in transformers " + __import__("transformers").__version__,
                                      "cases": ref})
    print("wrote", args.out)


if __name__ == "__main__":
    main()
