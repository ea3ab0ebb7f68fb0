#!/usr/bin/env python3
"""Writes testdata/metrics/*.json: expected ANLS and VQA-accuracy scores, per question and per dataset, as the
two evaluation harnesses compute them, for a few hundred predictions with the edge cases that matter
(numbers, articles, punctuation, contractions, trailing periods, white space, case, empty strings, non-ASCII
letters, the 0.5 threshold, pandas NA strings).

Usage:
    .venv/bin/python scripts/make_metric_fixtures.py [--out testdata/metrics]

The functions below restate the harness code paths step by step in Python (same string operations, same order,
same regular expressions), so that their quirks carry over:
  * lmms-eval DocVQA `anls`: distance on stripped/lower-cased/space-collapsed strings, divided by
    max(len(answer.upper()), len(pred.upper())) of the raw strings; 1 - min, zeroed below 0.5;
  * lmms-eval TextVQA: EvalAIAnswerProcessor on prediction and the 10 answers, then the mean over i of
    min(1, #{j != i: answer_j == pred} / 3) (statistics.mean);
  * VLMEvalKit DocVQA: anls_compute (the same raw-length denominator), hit_calculate (1 - min, zeroed below
    0.5), the dataset score x100;
  * VLMEvalKit TextVQA: process_answer (process_punctuation + _process_digit_article) and the same accuracy
    (np.mean); its period rule has a real lookbehind since 2025-05-13 (a period between or after digits stays,
    "2." stays "2."), where EvalAI's mistyped one deletes every period not followed by a digit;
  * VLMEvalKit's prediction round trip through a pandas table (default NA strings come back as NaN, and str()
    makes them "nan"), run with pandas itself.
The Go tests (eval/metrics_test.go) must match every score to 1e-9 and every normalized string exactly.
"""

import argparse
import csv
import io
import json
import os
import random
import re
import statistics

import numpy as np
import pandas as pd

# ----------------------------------------------------------------------------------------------------------
# VQA normalization (EvalAI as in lmms-eval, and VLMEvalKit's variant)
# ----------------------------------------------------------------------------------------------------------

PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = {"a", "an", "the"}
CONTRACTIONS = dict(
    aint="ain't", arent="aren't", cant="can't", couldve="could've", couldnt="couldn't", didnt="didn't",
    doesnt="doesn't", dont="don't", hadnt="hadn't", hasnt="hasn't", havent="haven't", hed="he'd", hes="he's",
    howd="how'd", howll="how'll", hows="how's", Im="I'm", Ive="I've", isnt="isn't", itd="it'd", itll="it'll",
    maam="ma'am", mightnt="mightn't", mightve="might've", mustnt="mustn't", mustve="must've", neednt="needn't",
    notve="not've", oclock="o'clock", oughtnt="oughtn't", shant="shan't", shouldve="should've",
    shouldnt="shouldn't", somebodyll="somebody'll", somebodys="somebody's", someoned="someone'd",
    someonell="someone'll", someones="someone's", somethingd="something'd", somethingll="something'll",
    thats="that's", thered="there'd", therere="there're", theres="there's", theyd="they'd", theyll="they'll",
    theyre="they're", theyve="they've", twas="'twas", wasnt="wasn't", weve="we've", werent="weren't",
    whatll="what'll", whatre="what're", whats="what's", whatve="what've", whens="when's", whered="where'd",
    wheres="where's", whereve="where've", whod="who'd", wholl="who'll", whos="who's", whove="who've",
    whyll="why'll", whyre="why're", whys="why's", wont="won't", wouldve="would've", wouldnt="wouldn't",
    yall="y'all", youd="you'd", youll="you'll", youre="you're", youve="you've",
)
CONTRACTIONS.update({
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    "hed've": "he'd've", "he'dve": "he'd've", "Id've": "I'd've", "I'dve": "I'd've", "itd've": "it'd've",
    "it'dve": "it'd've", "let's": "let's", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "somethingd've": "something'd've",
    "something'dve": "something'd've", "thered've": "there'd've", "there'dve": "there'd've",
    "theyd've": "they'd've", "they'dve": "they'd've", "wed've": "we'd've", "we'dve": "we'd've",
    "whod've": "who'd've", "who'dve": "who'd've", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've", "youd've": "you'd've", "you'dve": "you'd've",
})
assert len(CONTRACTIONS) == 120

# The period rule: delete "." not followed by a digit. The first group of the original pattern is a negative
# lookahead for the text "<=" + digit (a mistyped lookbehind) and never fails in front of a period; the count
# argument is re.UNICODE (= 32), so at most 32 periods go.
PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
VLM_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")  # VLMEvalKit since 2025-05-13: not after a digit either
EVALAI_COMMA = re.compile(r"(?<=\d)(\,)+(?=\d)")
VLM_COMMA = re.compile(r"(\d)(,)(\d)")


def punctuation(text, comma_regex, period_regex):
    out = text
    comma = comma_regex.search(text) is not None
    for p in PUNCT:
        if p + " " in text or " " + p in text or comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return period_regex.sub("", out, re.UNICODE)


def digits_articles(text):
    words = []
    for w in text.lower().split():
        w = NUMBER_WORDS.get(w, w)
        if w not in ARTICLES:
            words.append(w)
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def evalai_normalize(s):
    s = s.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    s = s.replace("\n", " ").replace("\t", " ").strip()
    return digits_articles(punctuation(s, EVALAI_COMMA, PERIOD))


def vlm_normalize(s):
    s = s.replace("\n", " ").replace("\t", " ").strip()
    return digits_articles(punctuation(s, VLM_COMMA, VLM_PERIOD))


def vqa_terms(pred, refs):
    return [min(1, float(sum(1 for j, r in enumerate(refs) if j != i and r == pred)) / 3) for i in range(len(refs))]


def lmms_textvqa(pred, refs):
    return statistics.mean(vqa_terms(evalai_normalize(pred), [evalai_normalize(r) for r in refs]))


def vlm_textvqa(pred, refs):
    return float(np.mean(vqa_terms(vlm_normalize(pred), [vlm_normalize(r) for r in refs])))


# ----------------------------------------------------------------------------------------------------------
# ANLS
# ----------------------------------------------------------------------------------------------------------


def edit_distance(a, b):
    if len(a) > len(b):
        a, b = b, a
    row = list(range(len(a) + 1))
    for j, cb in enumerate(b):
        new = [j + 1]
        for i, ca in enumerate(a):
            new.append(row[i] if ca == cb else 1 + min(row[i], row[i + 1], new[-1]))
        row = new
    return row[-1]


def collapse(s):
    return " ".join(s.strip().lower().split())


def lmms_anls(pred, refs):
    values = []
    for ref in refs:
        d = edit_distance(collapse(ref), collapse(pred))
        length = max(len(ref.upper()), len(pred.upper()))
        values.append(0.0 if length == 0 else float(d) / float(length))
    score = 1 - min(values)
    return 0 if score < 0.5 else score


def vlm_anls(pred, refs):
    values = []
    for ref in refs:
        d = edit_distance(collapse(ref), collapse(pred))
        length = max(len(ref.upper()), len(pred.upper()))
        values.append(0.0 if length == 0 else float(d) / float(length))
    return 0.0 if 1 - np.min(values) < 0.5 else float(1 - np.min(values))


def pandas_round_trip(preds):
    """VLMEvalKit's prediction column after a write/read through pandas (NA strings -> NaN -> 'nan')."""
    buf = io.StringIO()
    pd.DataFrame({"prediction": preds}).to_csv(buf, sep="\t", index=False, quoting=csv.QUOTE_ALL)
    back = pd.read_csv(io.StringIO(buf.getvalue()), sep="\t", dtype=str)
    return [str(x) for x in back["prediction"]]


# ----------------------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------------------

DOC_HAND = [
    ("42", ["42"]), ("42.", ["42"]), (" 42 ", ["42"]), ("$42.00", ["$42.00", "42.00"]), ("", ["abc"]),
    ("", [""]), ("abc", [""]), ("ab", ["ax"]), ("abcd", ["abxy"]), ("abcde", ["abxyz"]), ("ABC", ["abc"]),
    ("  The   Quick  Brown ", ["the quick brown"]), ("the quick brown", ["The Quick Brown Fox"]),
    ("Straße", ["STRASSE", "strasse"]), ("strasse", ["Straße"]), ("İstanbul", ["istanbul"]),
    ("ΟΔΟΣ", ["οδος", "οδοσ"]), ("ﬁnance", ["finance"]), ("N/A", ["n/a"]), ("None", ["none"]), ("nan", ["NaN"]),
    ("1,000", ["1000", "1,000"]), ("March 3, 1998", ["3/3/98", "march 3 1998"]), ("Dr. Smith", ["dr smith"]),
    ("tab\there", ["tab here"]), ("line\nbreak", ["line break"]), ("x\x1cy", ["x y"]), ("a\u00a0b", ["a b"]),
    ("ITC Limited", ["ITC LIMITED", "itc ltd"]), ("0.5 mg", ["0.5mg"]), ("yes", ["no", "yes", "maybe"]),
    ("the answer is 12", ["12"]), ("12", ["the answer is 12"]), ("colour", ["color"]), ("abcdefghij", ["abcdefghxy"]),
]

TEXT_HAND = [
    ("two", ["2"] * 4 + ["two"] * 3 + ["3", "three", "2"]),
    ("2", ["two", "2", "2", "II", "2 ", " 2", "2.", "two.", "2", "1"]),
    ("The cat", ["cat"] * 5 + ["a cat", "the cat", "cats", "cat.", "dog"]),
    ("dont", ["don't"] * 4 + ["dont", "do not", "don't.", "dont!", "no", "no"]),
    ("it's red", ["it's red", "its red", "red", "red", "it is red", "red", "red", "it's red", "its red", "red."]),
    ("What's up?", ["what's up", "whats up", "what is up", "up", "up", "sky", "what's up?", "whats up?", "up", "up"]),
    ("3.5", ["3.5", "3.50", "3.5.", "35", "3,5", "3.5", "3.5", "three point five", "3.5", "4"]),
    ("1,000", ["1000", "1,000", "1 000", "1000", "1.000", "1000", "1,000", "1000", "1000", "1000"]),
    ("hello,world", ["hello world", "helloworld", "hello, world", "hello world", "hello", "world", "hi",
                     "hello world", "helloworld", "hello,world"]),
    ("e-mail", ["email", "e-mail", "e mail", "email", "e-mail", "mail", "email", "email", "e - mail", "email"]),
    ("mr. smith", ["mr smith", "mr. smith", "smith", "mr smith", "mr smith", "mr.smith", "mr smith", "smith",
                   "mr. smith", "mr smith"]),
    ("yes.", ["yes"] * 10), ("Yes!", ["yes"] * 6 + ["no"] * 4), ("", [""] * 3 + ["a"] * 7), ("", ["yes"] * 10),
    ("None", ["0", "none", "zero", "no", "0", "nothing", "none", "0", "0", "zero"]),
    ("nan", ["nan"] * 3 + ["0"] * 7), ("N/A", ["n/a", "na", "n a", "n/a", "none", "n/a", "na", "n/a", "0", "n a"]),
    ("$5", ["5", "$5", "5 dollars", "$5", "five", "5", "$5.00", "5", "$5", "5"]),
    ("100%", ["100", "100%", "100 %", "100%", "100", "hundred", "100 percent", "100%", "100", "100%"]),
    ("(a)", ["a", "(a)", "a)", "(a", "a", "A", "answer a", "a", "(a)", "a"]),
    ("a b", ["b", "a b", "ab", "b", "a-b", "a_b", "b", "a/b", "a;b", "b"]),
    ("x . y", ["x y", "x . y", "x.y", "xy", "x y", "x y", "x. y", "x .y", "x y", "y"]),
    ("the end.", ["end", "the end", "end.", "the end.", "end", "end", "end!", "end?", "end", "the end"]),
    ("I'm here", ["i'm here", "im here", "I'm here", "here", "i am here", "im here", "here", "here", "i'm", "im"]),
    ("youre", ["you're", "youre", "you are", "you're", "you're", "u r", "you're", "youre", "you're", "you"]),
    ("Straße", ["strasse", "straße", "STRASSE", "street", "straße", "strasse", "straße", "strasse", "s", "x"]),
    ("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g.h.i", ["abcdefghijklmnopqrstuvwxyzabcdefghi"] * 10),
    ("one two three", ["1 2 3", "one two three", "123", "1 2 3", "1, 2, 3", "1 2 3", "1-2-3", "1 2 3", "1", "3"]),
    ("an apple a day", ["apple day", "an apple a day", "apple a day", "apple day", "apple", "day", "apple day",
                        "an apple", "apple day", "apple-day"]),
    ("it's", ["it 's", "its", "it's", "it is", "it 's", "its", "it's", "it", "it's", "its"]),
    ("coca-cola", ["coca cola", "cocacola", "coca-cola", "coke", "coca cola", "coca cola", "cocacola", "coca - cola",
                   "coca cola", "coca-cola"]),
    ("2,3", ["2,3", "23", "2 3", "2.3", "23", "2,3", "23", "23", "2 3", "two three"]),
    ("12:30", ["12:30", "1230", "12 30", "12:30", "half past twelve", "12:30 pm", "12:30", "12.30", "12:30", "1230"]),
    ("<b>bold</b>", ["bold", "b bold b", "<b>bold</b>", "bold", "bbold/b", "bold", "b bold /b", "bold", "x", "bold"]),
    ("tab\tsep", ["tab sep", "tab\tsep", "tabsep", "tab sep", "tab sep", "tab", "sep", "tab sep", "tab sep", "x"]),
]

WORDS = ["cat", "dog", "red", "blue", "stop", "exit", "coca", "cola", "apple", "pepsi", "nike", "sony", "the",
         "a", "an", "one", "two", "three", "ten", "none", "dont", "cant", "its", "it's", "what's", "whats", "mr.",
         "dr.", "no.", "st.", "yes", "no", "ok", "usa", "u.s.a.", "new", "york", "london", "paris", "2", "3", "10",
         "3.5", "1,000", "50%", "$20", "#1", "a-1", "b/c", "x+y", "(c)", "[d]", "{e}", "@home", "hi!", "why?",
         "well;", "\"quote\"", "back`tick", "under_score", "<tag>", "a=b", "c\\d", "ß", "Ä", "ÉCOLE", "naïve"]


def mutate(rng, s):
    """A plausible model answer derived from s."""
    k = rng.random()
    if k < 0.15:
        return s
    if k < 0.25:
        return s.upper() if rng.random() < 0.5 else s.capitalize()
    if k < 0.35:
        return s + rng.choice([".", "!", "?", " .", ".."])
    if k < 0.45:
        return rng.choice(["the ", "a ", "an ", "The "]) + s
    if k < 0.55:
        return "  " + s.replace(" ", rng.choice(["  ", "\t", " \n "])) + " "
    if k < 0.65 and s:
        i = rng.randrange(len(s))
        return s[:i] + rng.choice("abcxyz0123-.,/ ") + s[i + 1 :]
    if k < 0.72:
        return s + " " + rng.choice(WORDS)
    if k < 0.78:
        return ""
    if k < 0.84:
        return s.replace(" ", "")
    if k < 0.9:
        return rng.choice(WORDS)
    return rng.choice(["None", "N/A", "null", "NA", "n/a", "nan", "", "NULL", "<NA>"])


def phrase(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.choice([1, 1, 1, 2, 2, 3])))


def doc_cases(rng, n):
    cases = [dict(prediction=p, answers=a) for p, a in DOC_HAND]
    while len(cases) < n:
        refs = [phrase(rng)]
        for _ in range(rng.choice([0, 0, 1, 2])):
            refs.append(mutate(rng, refs[0]))
        cases.append(dict(prediction=mutate(rng, rng.choice(refs)), answers=refs))
    return cases


def text_cases(rng, n):
    cases = [dict(prediction=p, answers=a) for p, a in TEXT_HAND]
    while len(cases) < n:
        base = phrase(rng)
        pool = [base] + [mutate(rng, base) for _ in range(3)] + [phrase(rng)]
        refs = [rng.choice(pool) for _ in range(10)]
        cases.append(dict(prediction=mutate(rng, rng.choice(pool)), answers=refs))
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "metrics"))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)

    doc = doc_cases(rng, 300)
    trips = pandas_round_trip([c["prediction"] for c in doc])
    for c, rt in zip(doc, trips):
        c["vlmevalkit_prediction"] = rt
        c["lmms_eval_anls"] = lmms_anls(c["prediction"], c["answers"])
        c["vlmevalkit_anls"] = vlm_anls(rt, c["answers"])
    docvqa = {
        "notes": "DocVQA ANLS per question as lmms-eval and VLMEvalKit compute it (both divide the distance of the "
        "normalized strings by the longer raw upper-cased length; VLMEvalKit scores the prediction after its pandas "
        "round trip), and the dataset scores (lmms-eval: mean; VLMEvalKit: mean x100).",
        "pandas": pd.__version__,
        "cases": doc,
        "lmms_eval_score": sum(c["lmms_eval_anls"] for c in doc) / len(doc),
        "vlmevalkit_score": float(np.mean([c["vlmevalkit_anls"] for c in doc]) * 100),
    }
    text = text_cases(rng, 300)
    trips = pandas_round_trip([c["prediction"] for c in text])
    for c, rt in zip(text, trips):
        c["vlmevalkit_prediction"] = rt
        c["evalai_prediction"] = evalai_normalize(c["prediction"])
        c["evalai_answers"] = [evalai_normalize(a) for a in c["answers"]]
        c["vlmevalkit_normalized_prediction"] = vlm_normalize(rt)
        c["vlmevalkit_answers"] = [vlm_normalize(a) for a in c["answers"]]
        c["lmms_eval_accuracy"] = lmms_textvqa(c["prediction"], c["answers"])
        c["vlmevalkit_accuracy"] = vlm_textvqa(rt, c["answers"])
    textvqa = {
        "notes": "TextVQA VQA accuracy per question as lmms-eval (EvalAI normalization, statistics.mean) and "
        "VLMEvalKit (process_answer normalization after the pandas round trip, np.mean) compute it, the normalized "
        "strings, and the dataset scores (lmms-eval: mean; VLMEvalKit: mean x100).",
        "pandas": pd.__version__,
        "cases": text,
        "lmms_eval_score": sum(c["lmms_eval_accuracy"] for c in text) / len(text),
        "vlmevalkit_score": float(np.mean([c["vlmevalkit_accuracy"] for c in text]) * 100),
    }
    for name, obj in [("docvqa_anls.json", docvqa), ("textvqa_accuracy.json", textvqa)]:
        with open(os.path.join(args.out, name), "w") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.write("\n")
    print(
        f"docvqa: {len(doc)} cases, lmms-eval {docvqa['lmms_eval_score']:.6f}, vlmevalkit {docvqa['vlmevalkit_score']:.4f}; "
        f"textvqa: {len(text)} cases, lmms-eval {textvqa['lmms_eval_score']:.6f}, vlmevalkit {textvqa['vlmevalkit_score']:.4f}"
    )


if __name__ == "__main__":
    main()
