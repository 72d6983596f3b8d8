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

from giftlab.evaluation.choice import LETTERS
from giftlab.tinyworld.problems import (
    TOPIC, Problem, normalise_mix, problem_id, random_slip, render, sample_problem,
    sample_problems,
)

#: The tiny benchmarks ``make_benchmarks`` writes (``data/tiny/benchmarks/<name>.jsonl``).
BENCHMARK_NAMES = ("tiny_id", "tiny_ood", "tiny_family", "tiny_mc")

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
    ops: list = field(default_factory=lambda: ["add", "sub", "mul"])              # SFT/RL problems
    # a family_rate share of the corpus also uses ops no SFT/RL problem has (division): tiny_family
    pretrain_ops: list = field(default_factory=lambda: ["add", "sub", "mul", "div"])
    # step counts (inclusive ranges)
    train_steps: list = field(default_factory=lambda: [1, 3])       # training pool and tiny_id
    ood_steps: list = field(default_factory=lambda: [4, 4])         # tiny_ood
    family_steps: list = field(default_factory=lambda: [2, 3])      # tiny_family
    pretrain_steps: list = field(default_factory=lambda: [1, 4])    # the (broader) corpus
    # the DeepMath-schema training pool: r1_solution_1..3 are correct, styles drawn from demo_styles
    n_problems: int = 4000
    demo_styles: dict = field(default_factory=lambda: dict(DEFAULT_DEMO_STYLES))
    # the pretraining corpus
    pretrain_docs: int = 40000
    pretrain_styles: dict = field(default_factory=lambda: dict(DEFAULT_PRETRAIN_STYLES))
    slip_rate: float = 0.08          # share of solution documents with one propagated slip
    fact_rate: float = 0.05          # share of documents that are bare arithmetic fact lists
    mc_rate: float = 0.06            # share of documents that are multiple-choice exam items
    family_rate: float = 0.1         # share of documents that are chains using an op of unseen_ops()
    mc_bins: list = field(default_factory=lambda: [10, 20, 30])   # tiny_mc: (A) 0-9 (B) 10-19 ...
    # tiny benchmarks (held out of everything above)
    n_tiny_id: int = 200
    n_tiny_ood: int = 100
    n_tiny_family: int = 100
    n_tiny_mc: int = 100

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
                     "family_steps", "pretrain_steps"):
            v = getattr(self, name)
            if (not isinstance(v, (list, tuple)) or len(v) != 2 or not all(isinstance(x, int) for x in v)
                    or v[0] > v[1]):
                raise ValueError(f"world.{name}: expected [min, max] integers with min <= max, got {v!r}")
        for name in ("train_steps", "ood_steps", "family_steps", "pretrain_steps"):
            if getattr(self, name)[0] < 1:
                raise ValueError(f"world.{name}: step counts start at 1")
        for name in ("slip_rate", "fact_rate", "mc_rate", "family_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"world.{name}: must be in [0, 1]")
        if self.fact_rate + self.mc_rate + self.family_rate > 1.0:
            raise ValueError("world.family_rate: fact_rate + mc_rate + family_rate must be at most 1")
        bins = self.mc_bins
        if (not isinstance(bins, list) or not 1 <= len(bins) <= len(LETTERS) - 1
                or not all(isinstance(b, int) for b in bins)
                or [0, *bins, self.max_value + 1] != sorted(set([0, *bins, self.max_value + 1]))):
            raise ValueError(f"world.mc_bins: expected 1-9 increasing integers in (0, max_value], "
                             f"got {bins!r}")
        for name in (f"n_{b}" for b in BENCHMARK_NAMES):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"world.{name}: must be a positive integer (every tiny benchmark is evaluated)")
        for name in ("n_problems", "pretrain_docs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"world.{name}: must be a non-negative integer")
        normalise_mix(self.demo_styles, "demo_styles")
        normalise_mix(self.pretrain_styles, "pretrain_styles")
        sample_problem(random.Random(0), 1, **self.problem_kwargs())   # ops / ranges sanity
        sample_problem(random.Random(0), 1, **self.problem_kwargs(pretrain=True))
        if not self.unseen_ops():
            raise ValueError("world.pretrain_ops: tiny_family needs an op that world.ops lacks")

    def unseen_ops(self) -> list[str]:
        """Ops of the corpus that no SFT/RL problem uses: the tiny_family benchmark's family."""
        return [op for op in self.pretrain_ops if op not in self.ops]

    def in_family(self, p: Problem) -> bool:
        """Whether ``p`` uses an op of ``unseen_ops()`` (tiny_family items, family_rate documents)."""
        return any(op not in self.ops for op, _ in p.steps)

    def problem_kwargs(self, pretrain: bool = False) -> dict[str, Any]:
        """``sample_problem`` keywords: SFT/RL ops, or with ``pretrain`` the corpus's ops."""
        return {"start_range": self.start_range, "operand_range": self.operand_range,
                "mul_range": self.mul_range, "ops": tuple(self.pretrain_ops if pretrain else self.ops),
                "max_value": self.max_value}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rng(seed: int, stream: str) -> random.Random:
    # str seeds hash with sha512 inside random.seed: stable across runs and PYTHONHASHSEED
    return random.Random(f"{seed}:{stream}")


# ------------------------------------------------------------------------------- benchmarks

def benchmark_record(p: Problem) -> dict[str, Any]:
    return {"id": p.id, "prompt": p.question, "gold": str(p.answer), "kind": "math",
            "difficulty": float(len(p.steps))}


def mc_options(bins: list[int], max_value: int) -> list[str]:
    """The fixed options of every tiny multiple-choice item: value ranges cut at ``bins``.

    ``[10, 20, 30]`` with ``max_value`` 99 gives ``["0-9", "10-19", "20-29", "30-99"]``.
    """
    edges = [0, *bins, max_value + 1]
    return [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])]


def mc_letter(value: int, bins: list[int]) -> str:
    """The letter of the range that holds ``value``."""
    return LETTERS[sum(value >= b for b in bins)]


def mc_prompt(question: str, options: list[str]) -> str:
    """The tiny multiple-choice item: the question, then ``(A) 0-9 (B) 10-19 ...`` on one line.

    A categorical item with fixed options (like yes/no or entailment sets) rather than the real
    benchmarks' per-question options: looking a computed value up among arbitrary options was
    beyond the tiny models (their pass@1 sat at chance), mapping it to its range is not. Shorter
    than ``giftlab.evaluation.choice.format_mc_prompt`` (the pretraining blocks are 128 tokens);
    answers are ``\\boxed{letter}`` as there.
    """
    return question + "\n" + " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))


def mc_record(p: Problem, bins: list[int], max_value: int) -> dict[str, Any]:
    options = mc_options(bins, max_value)
    prompt = mc_prompt(p.question, options)
    return {"id": problem_id(prompt), "prompt": prompt, "question": p.question,
            "gold": mc_letter(p.answer, bins), "kind": "multiple_choice", "choices": options,
            "difficulty": float(len(p.steps))}


def make_benchmarks(cfg: WorldConfig) -> dict[str, list[dict[str, Any]]]:
    """The tiny benchmarks (``BENCHMARK_NAMES``), pairwise disjoint in their questions.

    * ``tiny_id``: ``train_steps`` chains, stratified by step count (in distribution);
    * ``tiny_ood``: longer chains (``ood_steps``) than any SFT/RL problem;
    * ``tiny_family``: ``family_steps`` chains with at least one op the corpus has but SFT/RL
      never use (``unseen_ops``: division) -- an unseen problem family;
    * ``tiny_mc``: ``train_steps`` chains as multiple-choice items (which range holds the result),
      a format only the pretraining corpus shows (the analogue of GPQA / MMLU-style OOD sets); as many
      items per gold letter, so guessing scores 1 / #options.
    """
    taken: set[str] = set()

    def draw(name: str, n: int, steps, require=None, pretrain=False, stratify=True) -> list[Problem]:
        probs = sample_problems(_rng(cfg.seed, name), n, steps, stratify=stratify, exclude=taken,
                                require=require, **cfg.problem_kwargs(pretrain))
        taken.update(p.question for p in probs)
        return probs

    tiny_id = draw("tiny_id", cfg.n_tiny_id, cfg.train_steps)
    tiny_ood = draw("tiny_ood", cfg.n_tiny_ood, cfg.ood_steps)
    family = draw("tiny_family", cfg.n_tiny_family, cfg.family_steps, require=cfg.in_family, pretrain=True)
    # the same number of items per gold letter (remainder to the last ones): chance is 1 / #options
    letters = LETTERS[:len(cfg.mc_bins) + 1]
    per_letter = [cfg.n_tiny_mc // len(letters) + (i >= len(letters) - cfg.n_tiny_mc % len(letters))
                  for i in range(len(letters))]
    mc = [p for letter, k in zip(letters, per_letter)
          for p in draw(f"tiny_mc_{letter}", k, cfg.train_steps, stratify=False,
                        require=lambda p, L=letter: mc_letter(p.answer, cfg.mc_bins) == L)]
    mc.sort(key=lambda p: p.id)  # interleave the letters
    return {"tiny_id": [benchmark_record(p) for p in tiny_id],
            "tiny_ood": [benchmark_record(p) for p in tiny_ood],
            "tiny_family": [benchmark_record(p) for p in family],
            "tiny_mc": [mc_record(p, cfg.mc_bins, cfg.max_value) for p in mc]}


def heldout_questions(benchmarks: Mapping[str, list[Mapping[str, Any]]]) -> set[str]:
    """Every benchmark question (a multiple-choice item's underlying question, not its prompt)."""
    return {r.get("question", r["prompt"]) for recs in benchmarks.values() for r in recs}


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
        p = sample_problem(rng, 1, **{**cfg.problem_kwargs(), "start_range": (0, cfg.max_value)})
        lines.append(render(p, "steps").split("\n")[0])
    return "\n".join(lines)


def make_corpus(cfg: WorldConfig, exclude: Iterable[str] = (), n_docs: int | None = None
                ) -> list[str]:
    """The pretraining corpus: ``"question\\nsolution"`` documents in ``pretrain_styles``.

    Problems have ``pretrain_steps`` steps (broader than training); a ``slip_rate`` share of
    solutions carries one propagated arithmetic slip; a ``fact_rate`` share of documents are bare
    lists of one-step facts (``23+7=30``); a ``family_rate`` share are chains with at least one op
    of ``pretrain_ops`` that SFT/RL never use (division: tiny_family's family); an ``mc_rate`` share are
    multiple-choice items (``question\\n(A) 0-9 (B) 10-19 ...\\nsolution``) whose solution ends
    in the right letter's box. Problems whose question or id is in ``exclude`` (the held-out benchmarks)
    never appear. Repeats of a question are allowed (it is a corpus).
    """
    rng = _rng(cfg.seed, "corpus")
    banned = set(exclude)
    styles, weights = normalise_mix(cfg.pretrain_styles, "pretrain_styles")
    lo, hi = cfg.pretrain_steps
    docs: list[str] = []
    n = cfg.pretrain_docs if n_docs is None else n_docs
    while len(docs) < n:
        u = rng.random()
        if u < cfg.fact_rate:
            docs.append(_fact_document(rng, cfg))
            continue
        family = cfg.fact_rate + cfg.mc_rate <= u < cfg.fact_rate + cfg.mc_rate + cfg.family_rate
        p = sample_problem(rng, rng.randint(lo, hi), **cfg.problem_kwargs(pretrain=family))
        while family and not cfg.in_family(p):  # redraw the chain, not the document kind
            p = sample_problem(rng, rng.randint(lo, hi), **cfg.problem_kwargs(pretrain=True))
        if p.question in banned or p.id in banned:
            continue
        style = rng.choices(styles, weights)[0]
        if u < cfg.fact_rate + cfg.mc_rate:
            # no wordy solutions: the item stays close to the 128-token pretraining block
            terse = "steps" if style == "verbose" else style
            docs.append(_mc_document(p, terse, cfg.mc_bins, cfg.max_value))
            continue
        slip = random_slip(rng, p) if rng.random() < cfg.slip_rate else None
        docs.append(p.question + "\n" + render(p, style, slip))
    return docs


def _mc_document(p: Problem, style: str, bins: list[int], max_value: int) -> str:
    """A worked multiple-choice item: the solution in ``style``, its final box holding the letter."""
    solution = render(p, style)
    cut = solution.rindex("\\boxed{")
    boxed = solution[cut:].replace(f"{{{p.answer}}}", f"{{{mc_letter(p.answer, bins)}}}", 1)
    return mc_prompt(p.question, mc_options(bins, max_value)) + "\n" + solution[:cut] + boxed


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
