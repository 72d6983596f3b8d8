"""Judging open-ended answers with a model (MT-Bench, Table 5): the prompts, the rating, and an API client.

* :class:`JudgeRequest` -> :func:`judge_prompt` -> ``(system, user)``: MT-Bench's single-answer grading prompts
  (:mod:`giftlab.evaluation.mtbench_prompts`, verbatim from FastChat), the reference-based ones for the
  categories in ``NEED_REF_CATS``, the multi-turn ones for turn 2.
* :func:`extract_rating`: FastChat's rule (``[[8]]``, else ``[8]``); no rating on the 1-10 scale is ``None``,
  never a 0.
* :class:`Judge`: the interface a judge implements (the OpenAI-compatible one here; a reference-based rubric
  judge for the tiny world plugs in behind it).
* :class:`OpenAIJudge`: the ``openai`` package's chat API against any OpenAI-compatible server (a hosted API,
  ``vllm serve``), with the library's own per-call timeout and retries with back-off, a bounded number of
  requests in flight, and a persistent JSONL cache so a rerun never pays twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

from giftlab.evaluation.mtbench_prompts import (
    NEED_REF_CATS,
    ONE_SCORE_PATTERN,
    ONE_SCORE_PATTERN_BACKUP,
    PROMPTS,
    JudgePrompt,
)

RATING_MIN, RATING_MAX = 1.0, 10.0


@dataclass(frozen=True)
class JudgeRequest:
    """One answer to judge: turn 1, or turn 2 of a two-turn conversation (which the judge sees whole).

    ``questions`` and ``answers``: the user turns and the model's answers (1 or 2 of each, same length);
    ``references``: the reference answers, one per question (MT-Bench has them for ``NEED_REF_CATS``);
    ``turn``: which answer is judged (2 needs both turns).
    """

    category: str
    questions: tuple[str, ...]
    answers: tuple[str, ...]
    references: tuple[str, ...] | None = None
    turn: int = 1

    def __post_init__(self) -> None:
        for name in ("questions", "answers", "references"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, str):
                    raise TypeError(f"JudgeRequest.{name}: a sequence of strings, not one string")
                object.__setattr__(self, name, tuple(value))
        if len(self.questions) not in (1, 2):
            raise ValueError(f"JudgeRequest: 1 or 2 questions, got {len(self.questions)}")
        if len(self.answers) != len(self.questions):
            raise ValueError(f"JudgeRequest: {len(self.answers)} answers for {len(self.questions)} questions")
        if self.references is not None and len(self.references) != len(self.questions):
            raise ValueError(f"JudgeRequest: {len(self.references)} references for {len(self.questions)} questions")
        if self.turn not in (1, 2) or self.turn > len(self.questions):
            raise ValueError(f"JudgeRequest: turn {self.turn} of a {len(self.questions)}-turn conversation")

    @property
    def needs_reference(self) -> bool:
        return self.category in NEED_REF_CATS


@dataclass(frozen=True)
class Judgement:
    """A judge's verdict on one :class:`JudgeRequest`.

    ``rating``: 1-10, or ``None`` when there is none (``error`` set: the call failed; ``error`` None: the reply
    had no rating, ``text`` kept). ``cached``: served from the cache, no request sent.
    """

    rating: float | None
    text: str
    error: str | None = None
    cached: bool = False


@dataclass
class JudgeStats:
    """What a judge did, summed over its ``judge`` calls.

    Per call to the API: ``sent`` (one per distinct prompt not in the cache), ``attempts`` (HTTP requests made
    for them: ``sent`` + ``retries``), ``retries`` (requests repeated after a timeout, a connection error or a
    408/409/429/5xx reply). Per judgement returned: ``cache_hits`` (served from the cache), ``failures`` (the
    call still failed after its retries: rating None, error set, nothing cached), ``malformed`` (fresh or cached,
    the text has no rating: rating None, error None).
    """

    sent: int = 0
    attempts: int = 0
    retries: int = 0
    cache_hits: int = 0
    failures: int = 0
    malformed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@runtime_checkable
class Judge(Protocol):
    """Anything that rates :class:`JudgeRequest` s: ``judge`` returns one :class:`Judgement` per request, in order."""

    @property
    def name(self) -> str: ...

    @property
    def stats(self) -> JudgeStats: ...

    def judge(self, requests: Sequence[JudgeRequest]) -> list[Judgement]: ...


def prompt_for(request: JudgeRequest) -> JudgePrompt:
    """FastChat's choice: reference-based prompts for ``NEED_REF_CATS``, multi-turn prompts for turn 2."""
    name = ("single-math-v1" if request.needs_reference else "single-v1") + ("-multi-turn" if request.turn == 2 else "")
    return PROMPTS[name]


def judge_prompt(request: JudgeRequest) -> tuple[str, str]:
    """``(system, user)`` messages for ``request``, formatted as FastChat's ``run_judge_single`` does.

    A category in ``NEED_REF_CATS`` without references raises (FastChat refuses such questions too);
    references given for another category are not shown to the judge (FastChat does not either).
    """
    prompt = prompt_for(request)
    kwargs: dict[str, str] = {}
    if request.needs_reference:
        if request.references is None:
            raise ValueError(f"category {request.category!r} is judged against a reference answer, but the "
                             f"request has none (MT-Bench references: {', '.join(NEED_REF_CATS)})")
        kwargs["ref_answer_1"] = request.references[0]
        if request.turn == 2:
            kwargs["ref_answer_2"] = request.references[1]
    if request.turn == 2:
        user = prompt.template.format(question_1=request.questions[0], question_2=request.questions[1],
                                      answer_1=request.answers[0], answer_2=request.answers[1], **kwargs)
    else:
        user = prompt.template.format(question=request.questions[0], answer=request.answers[0], **kwargs)
    return prompt.system, user


def extract_rating(text: str) -> float | None:
    """The rating in a judge's reply: FastChat's ``[[x]]``, else ``[x]``; ``None`` when there is none.

    Departure from FastChat (which keeps any number it finds, and writes -1 when none): a number outside
    the prompt's 1-10 scale (``[[0]]``, ``[[85]]``) is no rating either, so it can never pass for a score.
    """
    match = ONE_SCORE_PATTERN.search(text) or ONE_SCORE_PATTERN_BACKUP.search(text)
    if match is None:
        return None
    rating = float(match.group(1))
    if not math.isfinite(rating) or not RATING_MIN <= rating <= RATING_MAX:
        return None
    return rating


def one_line(text: str, limit: int = 300) -> str:
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class JudgementCache:
    """Judge replies on disk, one JSON object a line, appended and flushed entry by entry.

    A run killed mid-way keeps every reply it received; a torn last line (killed mid-write) is skipped on
    load, and the next append starts on a fresh line. Each line is written with one ``write`` on an
    ``O_APPEND`` descriptor, so threads (and, on a local file system, processes) can share a file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.skipped_lines = 0
        self._entries: dict[str, str] = {}
        self._lock = threading.Lock()
        self._newline_needed = False
        if self.path.exists():
            data = self.path.read_bytes()
            self._newline_needed = bool(data) and not data.endswith(b"\n")
            for raw in data.splitlines():
                try:
                    entry = json.loads(raw)
                    self._entries[entry["key"]] = entry["text"]
                except (ValueError, KeyError, TypeError):
                    self.skipped_lines += 1

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> str | None:
        return self._entries.get(key)

    def put(self, key: str, text: str, **about: object) -> None:
        line = json.dumps({"key": key, **about, "text": text}, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            payload = ("\n" if self._newline_needed else "") + line
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, payload.encode("utf-8"))
            finally:
                os.close(fd)
            self._newline_needed = False
            self._entries[key] = text


def cache_key(model: str, system: str, user: str, temperature: float, max_tokens: int) -> str:
    """The cache key of one judge call: the judge model, the exact messages (the answer is in them) and sampling
    (as numbers: ``temperature: 0`` and ``0.0`` in a config are the same call)."""
    blob = json.dumps({"model": model, "system": system, "user": user, "temperature": float(temperature),
                       "max_tokens": int(max_tokens)}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class OpenAIJudge:
    """A judge model behind an OpenAI-compatible chat API (``POST {base_url}/chat/completions``).

    ``base_url`` / ``api_key`` default to ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` (then OpenAI's own URL);
    with a base URL and no key at all, the key is ``"EMPTY"`` (``vllm serve`` without ``--api-key``). Only
    ``temperature`` and ``max_tokens`` are sent: serve a vLLM judge with ``--generation-config vllm``, else vLLM fills
    the rest from the model's generation_config.json (an instruct model's repetition_penalty, top_k, top_p).
    Timeouts and retries are the ``openai`` client's: ``timeout_s`` per HTTP request; up to ``max_retries``
    repeats after a timeout, a connection error or a 408/409/429/5xx reply, waiting the server's
    ``Retry-After`` / ``retry-after-ms`` when given (up to 2 min), else an exponential back-off from 0.5 s
    (at most 8 s, jittered). At most ``max_in_flight`` calls run at once. ``cache_path``: a JSONL file of
    replies keyed by :func:`cache_key`; replies without a rating are cached too (rerunning the same call at
    temperature 0 would only pay for the same reply), failed calls are not. ``stop_after_failures``: once that many
    calls have failed after their retries, the calls not yet started are not sent (each a failure saying so): a job
    that tolerates none (``judge.max_failed_calls: 0``) is lost with the first, and a judge server that is down or
    hung would otherwise hold it for every call's timeouts and retries (~21 min each at 180 s × 7 attempts).
    """

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, *,
                 timeout_s: float = 180.0, max_retries: int = 6, max_in_flight: int = 8,
                 cache_path: str | os.PathLike[str] | None = None, temperature: float = 0.0,
                 max_tokens: int = 2048, stop_after_failures: int | None = None) -> None:
        import openai

        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if api_key is None:
            if self.base_url is None:
                raise ValueError("judge: no API key (set OPENAI_API_KEY) and no base URL (set OPENAI_BASE_URL "
                                 "or judge base_url for a local OpenAI-compatible server)")
            api_key = "EMPTY"
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_in_flight = max_in_flight
        self.stop_after_failures = stop_after_failures
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.cache = JudgementCache(cache_path) if cache_path is not None else None
        self._stats = JudgeStats()
        self._lock = threading.Lock()
        self._local = threading.local()
        http_client = openai.DefaultHttpxClient(event_hooks={"request": [self._on_request]})
        self._client = openai.OpenAI(api_key=api_key, base_url=self.base_url, timeout=timeout_s,
                                     max_retries=max_retries, http_client=http_client)

    @property
    def name(self) -> str:
        return self.model

    @property
    def stats(self) -> JudgeStats:
        with self._lock:
            return JudgeStats(**self._stats.as_dict())

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self._stats, name, getattr(self._stats, name) + value)

    def _on_request(self, request) -> None:
        """httpx event hook, once per HTTP request: the client numbers its attempts in ``x-stainless-retry-count``."""
        retry = int(request.headers.get("x-stainless-retry-count", "0") or 0)
        self._local.retries = retry
        self._count(attempts=1, retries=1 if retry > 0 else 0)

    def _call(self, system: str, user: str) -> tuple[str | None, str | None]:
        """``(text, None)`` or ``(None, one-line error)``, after the client's retries."""
        self._local.retries = 0
        self._count(sent=1)
        try:
            completion = self._client.chat.completions.create(
                model=self.model, messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                temperature=self.temperature, max_tokens=self.max_tokens, n=1)
            content = completion.choices[0].message.content
        except Exception as err:  # noqa: BLE001 -- the openai client's errors, or a reply not shaped like a completion
            retries = getattr(self._local, "retries", 0)
            where = self.base_url or "the OpenAI API"
            return None, one_line(f"judge {self.model} at {where}: {type(err).__name__}: {err} "
                                  f"(after {retries} retr{'y' if retries == 1 else 'ies'})")
        return content or "", None

    def judge(self, requests: Sequence[JudgeRequest]) -> list[Judgement]:
        """One :class:`Judgement` per request, in order; identical prompts are sent once."""
        prompts = [judge_prompt(r) for r in requests]
        keys = [cache_key(self.model, s, u, self.temperature, self.max_tokens) for s, u in prompts]
        texts: dict[str, str] = {}
        errors: dict[str, str] = {}
        todo: dict[str, tuple[str, str]] = {}
        cached: set[str] = set()
        for key, prompt in zip(keys, prompts):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                texts[key] = hit
                cached.add(key)
            elif key not in todo:
                todo[key] = prompt

        failed_calls: list[str] = []  # errors of the calls sent that failed (not of those left unsent)

        def run(item: tuple[str, tuple[str, str]]) -> None:
            key, (system, user) = item
            with self._lock:
                failed = list(failed_calls)
            if self.stop_after_failures is not None and len(failed) >= self.stop_after_failures:
                errors[key] = one_line(f"not sent: {len(failed)} call(s) of judge {self.model} had failed "
                                       f"(first: {failed[0]})")
                return
            text, error = self._call(system, user)
            if error is not None:
                with self._lock:
                    failed_calls.append(error)
                errors[key] = error
                return
            texts[key] = text
            if self.cache is not None:
                self.cache.put(key, text, model=self.model)

        if todo:
            with ThreadPoolExecutor(max_workers=min(self.max_in_flight, len(todo)),
                                    thread_name_prefix="judge") as pool:
                list(pool.map(run, todo.items()))

        out: list[Judgement] = []
        hits = failures = malformed = 0
        for key in keys:
            if key in errors:
                failures += 1
                out.append(Judgement(rating=None, text="", error=errors[key], cached=False))
                continue
            text = texts[key]
            rating = extract_rating(text)
            malformed += rating is None
            hits += key in cached
            out.append(Judgement(rating=rating, text=text, error=None, cached=key in cached))
        self._count(cache_hits=hits, failures=failures, malformed=malformed)
        return out
