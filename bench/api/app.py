"""The baseline of `cargo xtask bench api`: the two benchmarked endpoints written the way the
platform spec describes a Python autogit (FastAPI, pydantic models, an `HTTPBearer` dependency).

- `GET /api/v1/services`: the services of the plan that `autogit install --dry-run` rendered
  (`BENCH_PLAN`, the same `plan.json`), each joined with its row of the same SQLite `state.db`
  (`BENCH_STATE_DB`, opened per request as a `get_db`-style dependency would), in the same JSON
  shape as autogit's (`Service`), with the same `status`/`limit`/`offset` query parameters and
  the `X-Total-Count` header.
- `POST /api/v1/security/analyze`: `PromptInjectionFilter` below, stages 1-3 of the spec's
  filter (Unicode normalisation and hidden characters, injection patterns as regular
  expressions, structural tricks and base64 payloads). It is not a port of autogit's guard
  (which also runs an n-gram classifier, stage 4): it is the work a Python implementation of
  the spec would do. A suspicious text is stored in a SQLite quarantine, like autogit's.
- Authentication: `HTTPBearer` reads `Authorization: Bearer <key>`; the dependency compares
  the SHA-256 of the presented key with the SHA-256 of the one key it was given
  (`BENCH_API_KEY`, hashed at start), in constant time (`secrets.compare_digest`), and answers 401 otherwise.
  There are no roles: the one key may call both endpoints (autogit checks `viewer`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import sqlite3
import time
import unicodedata
import uuid
from typing import Literal, Optional

from fastapi import Depends, FastAPI, HTTPException, Query, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

with open(os.environ["BENCH_PLAN"], encoding="utf-8") as f:
    PLAN = json.load(f)
STATE_DB = os.environ["BENCH_STATE_DB"]
QUARANTINE_DB = os.environ.get("BENCH_QUARANTINE_DB", STATE_DB + ".quarantine")
# The one accepted key arrives in the environment (never argv); only its digest is kept.
KEY_SHA256 = hashlib.sha256(os.environ.pop("BENCH_API_KEY").encode()).digest()

app = FastAPI(title="AutoGit Platform API (FastAPI baseline)", version="1.0.0")
bearer = HTTPBearer()


def require_key(creds: HTTPAuthorizationCredentials = Depends(bearer)) -> str:
    digest = hashlib.sha256(creds.credentials.encode()).digest()
    if not secrets.compare_digest(digest, KEY_SHA256):
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return "bench"


# ---- services ------------------------------------------------------------------------------

Status = Literal["healthy", "degraded", "unhealthy", "unknown"]


class Ports(BaseModel):
    internal: Optional[int] = None
    external: Optional[int] = None


class Service(BaseModel):
    name: str
    subdomain: Optional[str] = None
    status: Status
    ports: Ports
    state: Optional[str] = None
    since: Optional[int] = None
    restarts: int = 0
    flagged: bool = False
    flag_reason: Optional[str] = None
    url: Optional[str] = None


def status_of(state: Optional[str]) -> str:
    if state == "HEALTHY":
        return "healthy"
    if state in ("DEGRADED", "REPAIRING"):
        return "degraded"
    if state == "FAILED":
        return "unhealthy"
    return "unknown"


def get_db():
    # FastAPI runs a generator dependency and a sync endpoint on different threads of its pool:
    # its SQL guide passes check_same_thread=False for SQLite.
    conn = sqlite3.connect(STATE_DB, check_same_thread=False)
    try:
        yield conn
    finally:
        conn.close()


@app.get("/api/v1/services", response_model=list[Service])
def list_services(
    response: Response,
    status: Optional[Status] = None,
    limit: int = Query(100, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
    _: str = Depends(require_key),
    db: sqlite3.Connection = Depends(get_db),
) -> list[Service]:
    rows = {
        r[0]: r
        for r in db.execute(
            "SELECT name, state, since, reason, restarts, flagged, flag_reason FROM services ORDER BY name"
        )
    }
    base = PLAN.get("base_domain")
    out = []
    for s in PLAN["services"]:
        if s["placement"].get("kind") != "local":
            continue
        row = rows.get(s["name"])
        sub = s.get("subdomain")
        svc = Service(
            name=s["name"],
            subdomain=sub,
            status=status_of(row[1] if row else None),
            ports=Ports(
                internal=s.get("internal_port"),
                external=s["ports"][0]["host"] if s["ports"] else None,
            ),
            state=row[1] if row else None,
            since=row[2] if row else None,
            restarts=row[4] if row else 0,
            flagged=bool(row[5]) if row else False,
            flag_reason=row[6] if row else None,
            url=f"https://{sub}.{base}" if sub and base else None,
        )
        if status is None or svc.status == status:
            out.append(svc)
    response.headers["X-Total-Count"] = str(len(out))
    return out[offset : offset + limit]


# ---- security/analyze ----------------------------------------------------------------------


class AnalyzeRequest(BaseModel):
    text: str
    source: Optional[str] = Field(None, pattern=r"^[^\x00-\x1f\x7f-\x9f]{1,200}$")
    quarantine: Optional[bool] = None


class Finding(BaseModel):
    rule: str
    stage: str
    start: int
    end: int
    weight: float


class AnalyzeResult(BaseModel):
    verdict: str
    risk_score: float
    clean_text: str
    quarantined: list[str]
    detected_patterns: list[str]
    findings: list[Finding]
    quarantine_id: Optional[str] = None


class PromptInjectionFilter:
    """The spec's multi-stage filter, stages 1-3 (stage 4, the classifier, is optional there)."""

    HIDDEN = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\u00ad\u180e]")
    BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
    TAGS = re.compile("[\U000e0000-\U000e007f]")
    MIXED_SCRIPT = re.compile(r"\b(?=\w*[a-zA-Z])(?=\w*[\u0370-\u03ff\u0400-\u04ff])\w+\b")
    PATTERNS = [
        (name, re.compile(rx, re.IGNORECASE), weight)
        for name, rx, weight in [
            ("ignore_instructions", r"\b(ignore|disregard|forget|skip)\s+(all\s+|any\s+|the\s+)?(previous|prior|above|earlier|preceding)\s+(instructions?|prompts?|rules|directions)", 0.9),
            ("override_rules", r"\b(override|bypass|disable)\s+(your|the|all)\s+(rules|guidelines|safety|filters?|restrictions)", 0.8),
            ("new_instructions", r"\b(new|updated|real)\s+instructions?\s*:", 0.6),
            ("role_change", r"\byou\s+are\s+(now|no\s+longer)\b", 0.6),
            ("act_as", r"\b(act|behave)\s+as\s+(an?\s+)?(unrestricted|unfiltered|evil|jailbroken)", 0.7),
            ("pretend", r"\bpretend\s+(to\s+be|you\s+are)\b", 0.5),
            ("reveal_prompt", r"\b(reveal|show|print|repeat|leak)\s+(your|the)\s+(system\s+)?(prompt|instructions)", 0.8),
            ("system_prompt", r"\bsystem\s+prompt\b", 0.4),
            ("jailbreak", r"\b(jailbreak|dan\s+mode|do\s+anything\s+now|developer\s+mode)\b", 0.8),
            ("exfiltrate", r"\b(send|post|upload|exfiltrate)\s+(the\s+)?(secrets?|tokens?|credentials|api\s+keys?|passwords?)\s+to\b", 0.8),
            ("tool_abuse", r"\b(run|execute)\s+(this\s+)?(shell\s+)?command\b.*\b(curl|wget|rm\s+-rf|bash)\b", 0.6),
            ("de_ignore", r"\bignoriere?\s+(alle\s+)?(vorherigen|bisherigen|obigen)\s+anweisungen", 0.9),
            ("fr_ignore", r"\bignore[rz]?\s+(toutes\s+)?les\s+instructions\s+(pr[ée]c[ée]dentes|ci-dessus)", 0.9),
            ("es_ignore", r"\bignora(r)?\s+(todas\s+)?las\s+instrucciones\s+(anteriores|previas)", 0.9),
            ("it_ignore", r"\bignora\s+(tutte\s+)?le\s+istruzioni\s+precedenti", 0.9),
            ("pt_ignore", r"\bignore\s+(todas\s+)?as\s+instru[çc][õo]es\s+anteriores", 0.9),
            ("nl_ignore", r"\bnegeer\s+(alle\s+)?(vorige|eerdere)\s+instructies", 0.9),
            ("ru_ignore", r"игнорируй(те)?\s+(все\s+)?(предыдущие|прошлые)\s+инструкции", 0.9),
            ("zh_ignore", r"忽略(之前|以上|先前)的?(所有)?(指令|说明|提示)", 0.9),
            ("ja_ignore", r"(以前|前|上記)の(すべての)?指示を無視", 0.9),
        ]
    ]
    STRUCTURE = [
        ("chat_role_marker", re.compile(r"^\s*(system|assistant)\s*:", re.IGNORECASE | re.MULTILINE), 0.5),
        ("chat_template_token", re.compile(r"<\|(im_start|im_end|system|endoftext)\|>|\[/?INST\]|<</?SYS>>"), 0.7),
        ("instruction_header", re.compile(r"^#{1,6}\s*(system|instructions?)\b", re.IGNORECASE | re.MULTILINE), 0.5),
        ("html_comment", re.compile(r"<!--.*?-->", re.DOTALL), 0.3),
        ("hidden_html", re.compile(r"<[^>]+style\s*=\s*[\"'][^\"']*(display\s*:\s*none|font-size\s*:\s*0|color\s*:\s*(#fff\b|#ffffff|white))", re.IGNORECASE), 0.6),
    ]
    BASE64 = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")

    def analyze(self, text: str) -> dict:
        findings: list[dict] = []
        # Stage 1: hidden characters, bidi and tag characters, then NFKC and mixed scripts.
        for rule, rx, w in (("zero_width", self.HIDDEN, 0.3), ("bidi_control", self.BIDI, 0.5), ("tag_characters", self.TAGS, 0.7)):
            for m in rx.finditer(text):
                findings.append(dict(rule=rule, stage="unicode", start=m.start(), end=m.end(), weight=w, text=m.group()))
        stripped = self.TAGS.sub("", self.BIDI.sub("", self.HIDDEN.sub("", text)))
        clean = unicodedata.normalize("NFKC", stripped)
        for m in self.MIXED_SCRIPT.finditer(clean):
            findings.append(dict(rule="mixed_script", stage="unicode", start=m.start(), end=m.end(), weight=0.4, text=m.group()))
        # Stage 2: injection patterns, on the normalised text and on decoded base64 payloads.
        self._patterns(clean, 0, findings)
        for m in self.BASE64.finditer(clean):
            try:
                decoded = base64.b64decode(m.group(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
            before = len(findings)
            self._patterns(decoded, m.start(), findings)
            if len(findings) > before:
                findings.append(dict(rule="base64_payload", stage="structure", start=m.start(), end=m.end(), weight=0.5, text=m.group()))
        # Stage 3: structure.
        for rule, rx, w in self.STRUCTURE:
            for m in rx.finditer(clean):
                findings.append(dict(rule=rule, stage="structure", start=m.start(), end=m.end(), weight=w, text=m.group()))
        risk = 1.0
        for f in findings:
            risk *= 1.0 - f["weight"]
        risk = round(1.0 - risk, 4)
        verdict = "blocked" if risk >= 0.8 else "suspicious" if risk >= 0.4 else "clean"
        patterns = []
        for f in findings:
            if f["rule"] not in patterns:
                patterns.append(f["rule"])
        return dict(
            verdict=verdict,
            risk_score=risk,
            clean_text=clean,
            quarantined=[f["text"] for f in findings if f["stage"] != "unicode"],
            detected_patterns=patterns,
            findings=[{k: v for k, v in f.items() if k != "text"} for f in findings],
        )

    def _patterns(self, text: str, offset: int, findings: list[dict]) -> None:
        for rule, rx, w in self.PATTERNS:
            for m in rx.finditer(text):
                findings.append(dict(rule=rule, stage="pattern", start=offset + m.start(), end=offset + m.end(), weight=w, text=m.group()))


FILTER = PromptInjectionFilter()


def quarantine(source: str, text: str, result: dict) -> str:
    qid = f"q-{time.strftime('%Y%m%d', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    conn = sqlite3.connect(QUARANTINE_DB)
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS quarantine (id TEXT PRIMARY KEY, at REAL, source TEXT, original_text TEXT,"
            " detected_patterns TEXT, risk_score REAL, sanitized_text TEXT, analysis_status TEXT)"
        )
        conn.execute(
            "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
            (qid, time.time(), source, text, json.dumps(result["detected_patterns"]), result["risk_score"], result["clean_text"]),
        )
        conn.commit()
    finally:
        conn.close()
    return qid


@app.post("/api/v1/security/analyze", response_model=AnalyzeResult)
def analyze(req: AnalyzeRequest, _: str = Depends(require_key)) -> AnalyzeResult:
    result = FILTER.analyze(req.text)
    qid = None
    if (req.quarantine is None or req.quarantine) and result["verdict"] != "clean":
        qid = quarantine(req.source or "api-request", req.text, result)
    return AnalyzeResult(quarantine_id=qid, **result)
