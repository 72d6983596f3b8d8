"""The tiny world: DeepMath-schema problems, a noisy pretraining corpus, and tiny benchmarks.

``WorldConfig`` holds every knob (the ``world:`` section of params.yaml); ``build_world`` makes all
three artifacts from one seed. Each artifact draws from its own ``random.Random`` stream derived
from the seed, and the order is fixed: benchmarks first, then the training pool and the corpus,
both excluding every benchmark question — so the held-out sets never leak into training.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Mapping

from giftlab.tinyworld.problems import (
    TOPIC, Problem, normalise_mix, problem_id, random_slip, render, sample_problem, sample_problems,
)

DEFAULT_DEMO_STYLES = {"steps": 0.4, "chain": 0.2, "expression": 0.2, "answer": 0.2}
DEFAULT_PRETRAIN_STYLES = {"steps": 0.3, "verbose": 0.2, "chain": 0.15, "expression": 0.15,
                           "answer": 0.2}


@dataclass
class WorldConfig:
    seed: int = 1234
    # the problem family
    start_range: list = field(default_factory=lambda: [1, 20])
    operand_range: list = field(default_factory=lambda: [1, 9])     # add / subtract operands
    mul_range: list = field(default_factory=lambda: [2, 3])         # multiply (and divide) operands
    max_value: int = 99                                             # every running value in [0, max]
    ops: list = field(default_factory=lambda: ["add", "sub", "mul"])
    # step counts (inclusive ranges)
    train_steps: list = field(default_factory=lambda: [1, 3])       # training pool and tiny_id
    ood_steps: list = field(default_factory=lambda: [4, 4])         # tiny_ood
    pretrain_steps: list = field(default_factory=lambda: [1, 4])    # the (broader) corpus
    # the DeepMath-schema training pool: r1_solution_1..3 are correct, styles drawn from demo_styles
    n_problems: int = 4000
    demo_styles: dict = field(default_factory=lambda: dict(DEFAULT_DEMO_STYLES))
    # the pretraining corpus
    pretrain_docs: int = 40000
    pretrain_styles: dict = field(default_factory=lambda: dict(DEFAULT_PRETRAIN_STYLES))
    slip_rate: float = 0.08          # share of solution documents with one propagated slip
    fact_rate: float = 0.05          # share of documents that are bare arithmetic fact lists
    # tiny benchmarks (held out of everything above)
    n_tiny_id: int = 200
    n_tiny_ood: int = 100

    @classmethod
    def from_dict(cls, config: Mapping[str, Any] | None) -> "WorldConfig":
        config = dict(config or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known - {"threads"})
        if unknown:
            raise ValueError(f"world.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
        config.pop("threads", None)
        cfg = cls(**config)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name in ("start_range", "operand_range", "mul_range", "train_steps", "ood_steps",
                     "pretrain_steps"):
            v = getattr(self, name)
            if (not isinstance(v, (list, tuple)) or len(v) != 2 or not all(isinstance(x, int) for x in v)
                    or v[0] > v[1]):
                raise ValueError(f"world.{name}: expected [min, max] integers with min <= max, got {v!r}")
        for name in ("train_steps", "ood_steps", "pretrain_steps"):
            if getattr(self, name)[0] < 1:
                raise ValueError(f"world.{name}: step counts start at 1")
        for name in ("slip_rate", "fact_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"world.{name}: must be in [0, 1]")
        for name in ("n_problems", "pretrain_docs", "n_tiny_id", "n_tiny_ood"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"world.{name}: must be a non-negative integer")
        normalise_mix(self.demo_styles, "demo_styles")
        normalise_mix(self.pretrain_styles, "pretrain_styles")
        sample_problem(random.Random(0), 1, **self.problem_kwargs())   # ops / ranges sanity

    def problem_kwargs(self) -> dict[str, Any]:
        return {"start_range": self.start_range, "operand_range": self.operand_range,
                "mul_range": self.mul_range, "ops": tuple(self.ops), "max_value": self.max_value}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rng(seed: int, stream: str) -> random.Random:
    # str seeds hash with sha512 inside random.seed: stable across runs and PYTHONHASHSEED
    return random.Random(f"{seed}:{stream}")


# ------------------------------------------------------------------------------- benchmarks

def benchmark_record(p: Problem) -> dict[str, Any]:
    return {"id": p.id, "prompt": p.question, "gold": str(p.answer), "kind": "math",
            "difficulty": float(len(p.steps))}


def make_benchmarks(cfg: WorldConfig) -> dict[str, list[dict[str, Any]]]:
    """``tiny_id`` (train_steps, stratified by step count) and ``tiny_ood`` (ood_steps), disjoint."""
    kw = cfg.problem_kwargs()
    tiny_id = sample_problems(_rng(cfg.seed, "tiny_id"), cfg.n_tiny_id, cfg.train_steps,
                              stratify=True, **kw)
    tiny_ood = sample_problems(_rng(cfg.seed, "tiny_ood"), cfg.n_tiny_ood, cfg.ood_steps,
                               stratify=True, exclude={p.question for p in tiny_id}, **kw)
    return {"tiny_id": [benchmark_record(p) for p in tiny_id],
            "tiny_ood": [benchmark_record(p) for p in tiny_ood]}


def heldout_questions(benchmarks: Mapping[str, list[Mapping[str, Any]]]) -> set[str]:
    return {r["prompt"] for recs in benchmarks.values() for r in recs}


# -------------------------------------------------------------------- DeepMath-schema problems

def deepmath_row(p: Problem, styles: list[str]) -> dict[str, Any]:
    row = {"id": p.id, "question": p.question, "final_answer": str(p.answer),
           "difficulty": float(len(p.steps)), "topic": TOPIC}
    for i, style in enumerate(styles, start=1):
        row[f"r1_solution_{i}"] = render(p, style)
    row["solution_styles"] = list(styles)
    return row


def make_problems(cfg: WorldConfig, exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The training pool: ``n_problems`` DeepMath-schema rows with correct demonstrations.

    ``r1_solution_1..3`` are three independent draws from ``demo_styles`` (all end with the right
    ``\\boxed{final_answer}``); ``solution_styles`` records which. ``exclude``: questions or ids.
    """
    rng = _rng(cfg.seed, "problems")
    styles, weights = normalise_mix(cfg.demo_styles, "demo_styles")
    probs = sample_problems(rng, cfg.n_problems, cfg.train_steps, exclude=exclude,
                            **cfg.problem_kwargs())
    return [deepmath_row(p, rng.choices(styles, weights, k=3)) for p in probs]


# ----------------------------------------------------------------------- pretraining corpus

def _fact_document(rng: random.Random, cfg: WorldConfig) -> str:
    lines = []
    for _ in range(rng.randint(4, 10)):
        p = sample_problem(rng, 1, start_range=(0, cfg.max_value), operand_range=cfg.operand_range,
                           mul_range=cfg.mul_range, ops=tuple(cfg.ops), max_value=cfg.max_value)
        lines.append(render(p, "steps").split("\n")[0])
    return "\n".join(lines)


def make_corpus(cfg: WorldConfig, exclude: Iterable[str] = (), n_docs: int | None = None
                ) -> list[str]:
    """The pretraining corpus: ``"question\\nsolution"`` documents in ``pretrain_styles``.

    Problems have ``pretrain_steps`` steps (broader than training); a ``slip_rate`` share of
    solutions carries one propagated arithmetic slip; a ``fact_rate`` share of documents are bare
    lists of one-step facts (``23+7=30``). Problems whose question or id is in ``exclude`` (the
    held-out benchmarks) never appear. Repeats of a question are allowed (it is a corpus).
    """
    rng = _rng(cfg.seed, "corpus")
    banned = set(exclude)
    styles, weights = normalise_mix(cfg.pretrain_styles, "pretrain_styles")
    lo, hi = cfg.pretrain_steps
    kw = cfg.problem_kwargs()
    docs: list[str] = []
    n = cfg.pretrain_docs if n_docs is None else n_docs
    while len(docs) < n:
        if rng.random() < cfg.fact_rate:
            docs.append(_fact_document(rng, cfg))
            continue
        p = sample_problem(rng, rng.randint(lo, hi), **kw)
        if p.question in banned or p.id in banned:
            continue
        style = rng.choices(styles, weights)[0]
        slip = random_slip(rng, p) if rng.random() < cfg.slip_rate else None
        docs.append(p.question + "\n" + render(p, style, slip))
    return docs


# ------------------------------------------------------------------------------------ world

@dataclass
class World:
    config: WorldConfig
    problems: list[dict[str, Any]]
    corpus: list[str]
    benchmarks: dict[str, list[dict[str, Any]]]

    def summary(self) -> dict[str, Any]:
        from collections import Counter

        return {
            "n_problems": len(self.problems),
            "problem_steps": dict(sorted(Counter(int(r["difficulty"]) for r in self.problems).items())),
            "demo_styles_1": dict(Counter(r["solution_styles"][0] for r in self.problems)),
            "n_corpus_docs": len(self.corpus),
            "corpus_chars": sum(len(d) + 1 for d in self.corpus),
            "benchmarks": {k: len(v) for k, v in self.benchmarks.items()},
        }


def build_world(config: Mapping[str, Any] | WorldConfig | None = None,
                exclude: Iterable[str] = ()) -> World:
    """Everything the tiny profile needs, from one seed. ``exclude`` adds questions/ids to hold out
    of both the training pool and the corpus (on top of the benchmarks)."""
    cfg = config if isinstance(config, WorldConfig) else WorldConfig.from_dict(config)
    benchmarks = make_benchmarks(cfg)
    held = heldout_questions(benchmarks) | set(exclude)
    held |= {problem_id(q) for q in list(held) if not q.startswith("tw-")}
    problems = make_problems(cfg, exclude=held)
    corpus = make_corpus(cfg, exclude=held)
    return World(cfg, problems, corpus, benchmarks)
