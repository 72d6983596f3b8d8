"""Typed job configs: what each rule's script reads from its ``--config`` (open-r1's one-dataclass-per-script shape).

The plan writes each job's config (:meth:`giftlab.plan.Plan.job`); its script parses it once into the dataclass
here (:meth:`JobConfig.from_config`). A key the dataclass does not know, a missing required one, or a value of the
wrong type is one :class:`~giftlab.cli.ConfigError` naming it, so no such script reads
``config.get(key, default)``. The raw mapping still goes into each result's provenance unchanged. The two scripts of
the tiny world's own rules check their keys themselves: ``make_world`` through ``tinyworld.WorldConfig``,
``pretrain_base`` against the backbone's and ``pretrain``'s key lists.

``tests/test_jobs.py`` parses every job of every profile's plan (and the on-demand ``models.extra`` jobs) into its
dataclass, so the plan and the scripts cannot drift apart.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Mapping

from giftlab.cli import ConfigError

#: keys any job may carry that no script reads (cli.setup reads ``threads``)
COMMON_KEYS = ("threads",)
#: pass@k reported when a config names no eval.ks (giftlab.config re-exports it for the plan and the checks)
DEFAULT_PASS_KS = (1, 2, 4, 8)


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether ``value`` fits a simple annotation (int, float, str, bool, list, dict, tuple, unions, Any)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    base = origin or annotation
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base in (list, tuple):
        return isinstance(value, (list, tuple))
    if base is dict:
        return isinstance(value, Mapping)
    return isinstance(value, base)


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
               tuple: "a list", dict: "a mapping", type(None): "null"}


def _describe(annotation: Any) -> str:
    """``int | None`` -> 'an integer or null' (what the message says a value must be)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    base = typing.get_origin(annotation) or annotation
    return _TYPE_WORDS.get(base, getattr(base, "__name__", str(base)))


@dataclass
class JobConfig:
    """Base of the job dataclasses: :meth:`from_config` checks names, presence and types in one place."""

    RULE: ClassVar[str] = ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str = "config"):
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in fields(cls)}
        for key in config:
            if key not in known and key not in COMMON_KEYS:
                raise ConfigError(f"{where}: {key}: not a key of the {cls.RULE or cls.__name__} job "
                                  f"(one of {', '.join(sorted(known))})")
        values = {}
        for name, f in known.items():
            if name in config:
                if not _accepts(hints[name], config[name]):
                    raise ConfigError(f"{where}: {name}: {config[name]!r} is not {_describe(hints[name])}")
                values[name] = config[name]
            elif f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(f"{where}: {name}: missing (the {cls.RULE or cls.__name__} job needs it)")
        return cls(**values)


@dataclass
class SplitJob(JobConfig):
    RULE: ClassVar[str] = "split"
    seed: int
    split: dict
    solution_key: str
    instruction: bool = False


@dataclass
class SFTJob(JobConfig):
    RULE: ClassVar[str] = "sft"
    seed: int
    backbone: str
    run: str
    method: str
    solution_key: str
    settings: dict                 # giftlab.training.sft.SFTSettings.from_config checks these
    beta: float | None = None
    objective_params: dict = field(default_factory=dict)


@dataclass
class ReferenceCacheJob(JobConfig):
    """The frozen base's log-probs over one SFT training split (giftlab.training.reference)."""

    RULE: ClassVar[str] = "reference_cache"
    seed: int
    backbone: str
    split: str
    solution_key: str
    max_length: int
    top_k: int
    batch_size: int = 32


def check_dual_clip(grpo: Mapping[str, Any]) -> None:
    """``grpo.dual_clip`` is TRL's ``delta``, which caps the probability ratio whatever the advantage's sign; above
    1 + ``clip_epsilon`` that is VeRL's dual clip (only a negative advantage's loss changes), below it is not."""
    dual_clip = grpo.get("dual_clip")
    if dual_clip is not None and dual_clip <= 1 + grpo.get("clip_epsilon", 0.2):
        raise ConfigError(f"config error: grpo.dual_clip ({dual_clip}) must be above 1 + grpo.clip_epsilon "
                          f"({1 + grpo.get('clip_epsilon', 0.2)})")


def check_grpo_batch(grpo: Mapping[str, Any], world_size: int) -> None:
    """One update's ``prompts_per_update`` × G completions over ``world_size`` processes × ``grad_accum`` micro-batches,
    and a generation batch of whole updates: checked when the plan is made (the processes of ``launch.grpo``) and
    when GRPO starts (those it got)."""
    grad_accum = int(grpo.get("grad_accum", 1))
    per_gen, per_update = grpo["prompts_per_generation"], grpo["prompts_per_update"]
    if per_gen % per_update:
        raise ConfigError(f"config error: grpo.prompts_per_generation ({per_gen}) must be a multiple of "
                          f"grpo.prompts_per_update ({per_update})")
    completions_per_update = per_update * grpo["num_generations"]
    if completions_per_update % (world_size * grad_accum):
        raise ConfigError(f"config error: grpo.prompts_per_update × num_generations ({completions_per_update}) "
                          f"must divide evenly over {world_size} processes × {grad_accum} accumulation steps")


@dataclass
class GRPOJob(JobConfig):
    RULE: ClassVar[str] = "grpo"
    seed: int
    backbone: str
    run: str
    grpo: dict                     # the config's grpo section (the schema checks its keys; grpo_arguments reads it)
    sft_epoch: int | None = None
    # the unified runs (config unified.*) only; plain GRPO jobs carry none of these keys
    rl_method: str = "grpo"        # a key of giftlab.rl_methods.RL_METHODS, or plain GRPO
    method_params: dict = field(default_factory=dict)   # the method's checked hyperparameters
    solution_key: str | None = None                     # the demonstration column (LUFFY's expert traces, ReLIFT's SFT)


@dataclass(kw_only=True)
class EngineSettings:
    """The sampling engine of a job that generates (evaluations, MT-Bench answers): ``eval.*`` keys, shared so both
    jobs build their generator alike (:meth:`generator_kwargs`)."""

    top_p: float = 1.0
    backend: str = "auto"
    batch_size: int = 32
    vllm: dict | None = None
    stop_token_ids: list = field(default_factory=list)
    seed_scheme: str = "hash"
    chat_template: str | bool = "auto"

    #: the keys the plan copies from ``eval`` into a job that samples with the evaluation's engine
    KEYS: ClassVar[tuple[str, ...]] = ("top_p", "backend", "batch_size", "vllm", "stop_token_ids", "seed_scheme",
                                       "chat_template")

    def generator_kwargs(self) -> dict:
        """``giftlab.evaluation.generation.make_generator``'s keywords (after the model)."""
        return {"backend": self.backend, "batch_size": self.batch_size, "stop_token_ids": tuple(self.stop_token_ids),
                "seed_scheme": self.seed_scheme, **(self.vllm or {})}


@dataclass
class EvalSettings(EngineSettings, JobConfig):
    """How one benchmark is sampled and graded (``eval.*`` with ``eval.pre_rl`` / ``eval.per_benchmark``)."""

    RULE: ClassVar[str] = "evaluate"
    benchmark: str
    max_new_tokens: int
    seed: int = 0
    n_samples: int = 8
    temperature: float = 0.6
    ks: list = field(default_factory=lambda: list(DEFAULT_PASS_KS))
    limit: int | None = None
    ci_resamples: int = 1000
    grading_timeout: float = 10.0
    grading_workers: int = 2
    percent_rule: bool = True
    duplicates: str = "drop"
    choice_shuffle_seed: int = 0
    # MMLU-Redux: the error_type labels scored (its "ok" rows by default), and whether wrong_groundtruth rows are
    # scored against their correct_answer (lm-eval's choice) instead of dropped
    mmlu_redux_keep: list = field(default_factory=lambda: ["ok"])
    mmlu_redux_rekey: bool = False
    code_timeout: float | None = None
    code_memory_mb: int | None = None
    code_workers: int | None = None
    # under vLLM (which takes a benchmark's prompts at once), prompts generated between two saves of the samples so
    # far (giftlab.evaluation.resume.GenerationLog: a retry generates only the rest); each chunk waits for its
    # longest sample. 0: all at once, nothing kept. The HF backend saves after each of its batches anyway
    save_every_prompts: int = 2048
    per_benchmark: dict = field(default_factory=dict)
    # who is evaluated (recorded in the summary's provenance; the job's identity)
    stage: str | None = None
    backbone: str | None = None
    run: str | None = None

    def __post_init__(self):
        if self.n_samples < 1:
            raise ConfigError(f"config: n_samples must be >= 1, got {self.n_samples}")
        if self.save_every_prompts < 0:
            raise ConfigError(f"config: save_every_prompts must be >= 0, got {self.save_every_prompts}")
        if any(int(k) < 1 or int(k) > self.n_samples for k in self.ks):
            raise ConfigError(f"config: ks {list(self.ks)}: every k must be in [1, n_samples = {self.n_samples}]")

    def load_options(self) -> dict[str, Any]:
        """What :func:`giftlab.evaluation.benchmarks.load_benchmark_checked` reads these settings with: the evaluation
        job and scripts/check_benchmarks.py load a file alike."""
        return {"duplicates": self.duplicates, "shuffle_seed": self.choice_shuffle_seed,
                "redux_keep": tuple(self.mmlu_redux_keep), "redux_rekey": self.mmlu_redux_rekey}

    @staticmethod
    def of_benchmark(job: Mapping[str, Any], name: str) -> dict:
        """One benchmark's config within an evaluation job's (``{common keys..., "benchmarks": {name: settings}}``):
        what scripts/evaluate.py runs it with and records, and what giftlab.stale expects to find recorded."""
        return {**{k: v for k, v in job.items() if k != "benchmarks"}, **job["benchmarks"][name], "benchmark": name}

    @staticmethod
    def overrides(config: Mapping[str, Any]) -> dict:
        """The ``per_benchmark`` overrides of the config's ``benchmark`` ({} when none)."""
        overrides = dict((config.get("per_benchmark") or {}).get(config.get("benchmark")) or {})
        if "benchmark" in overrides:
            raise ConfigError("config: per_benchmark overrides may not change 'benchmark'")
        return overrides

    @classmethod
    def for_benchmark(cls, config: Mapping[str, Any]) -> "EvalSettings":
        """One benchmark's settings, with its ``per_benchmark`` overrides applied."""
        return cls.from_config({**config, **cls.overrides(config)})


@dataclass
class ConsistencyJob(JobConfig):
    RULE: ClassVar[str] = "consistency"
    stage_pair: str
    seed: int = 0
    backbone: str | None = None
    run: str | None = None
    topk: list = field(default_factory=lambda: [1, 5, 10, 20, 50])
    max_examples: int | None = None
    solution_key: str = "r1_solution_1"
    max_length: int = 1024
    batch_size: int = 8
    chunk_size: int = 1024
    layer: int = -1
    dtype: str | None = None
    device: str = "auto"
    ci_resamples: int = 1000
    geometry: str = "hidden"  # Table 4's Cos / L2: "hidden" (the last layer's output) | "parameters"


@dataclass
class TableJob(JobConfig):
    RULE: ClassVar[str] = "table"
    table: int | str
    seed: int = 0
    backbones: list | None = None
    benchmarks: list | None = None
    ks: list = field(default_factory=lambda: list(DEFAULT_PASS_KS))
    report_metric: dict | None = None
    run_specs: dict | None = None


@dataclass
class ReportJob(JobConfig):
    """The report jobs that read the run table and metric files alike: Figures 2-3, the claims and the DVC
    summary."""

    RULE: ClassVar[str] = "report (figure2, figure3, claims, summary)"
    seed: int = 0
    backbones: list | None = None
    benchmark: str | None = None
    runs: list | None = None       # the runs drawn (default: plain SFT and every GIFT β)
    ci: bool = True
    run_specs: dict | None = None
    reasoning_benchmarks: list | None = None   # claims: Table 1's benchmarks (claim gift_beats_unified)
    report_metric: dict | None = None          # claims: eval.report_metric, the cells judged at another pass@k


@dataclass
class Fig1Job(JobConfig):
    RULE: ClassVar[str] = "figure1"
    backbones: list
    benchmarks: list
    seed: int = 0


@dataclass
class RLGainJob(JobConfig):
    RULE: ClassVar[str] = "rl_gain"
    pairs: list
    seed: int = 0
    run_specs: dict | None = None


@dataclass
class MTBenchQuestionsJob(JobConfig):
    """The tiny world's two-turn dialogues (giftlab.tinyworld.dialogue), drawn with the world's own settings."""

    RULE: ClassVar[str] = "mtbench_questions"
    seed: int
    n_dialogues: int
    world: dict = field(default_factory=dict)      # the config's world section (giftlab.tinyworld.WorldConfig)
    categories: list = field(default_factory=lambda: ["math", "reasoning", "extraction"])


@dataclass
class MTBenchAnswerJob(EngineSettings, JobConfig):
    """One model's answers to both turns of every dialogue, on the evaluation's engine (:class:`EngineSettings`)."""

    RULE: ClassVar[str] = "mtbench_answer"
    seed: int
    backbone: str
    run: str
    stage: str
    max_new_tokens: int
    temperature: float = 0.7
    temperatures: dict = field(default_factory=dict)   # per category (FastChat's temperature_config)


@dataclass
class MTBenchJudgeJob(JobConfig):
    """One model's answers judged turn by turn (giftlab.evaluation.mtbench.make_judge reads ``judge``)."""

    RULE: ClassVar[str] = "mtbench_judge"
    seed: int
    backbone: str
    run: str
    judge: dict
    ci_resamples: int = 1000


#: rule -> its job dataclass (the rules whose scripts parse their config here)
JOBS: dict[str, type[JobConfig]] = {
    "split": SplitJob, "sft": SFTJob, "grpo": GRPOJob, "consistency": ConsistencyJob, "table": TableJob,
    "figure1": Fig1Job, "figure2": ReportJob, "figure3": ReportJob, "claims": ReportJob, "summary": ReportJob,
    "rl_gain": RLGainJob, "mtbench_questions": MTBenchQuestionsJob, "mtbench_answer": MTBenchAnswerJob,
    "mtbench_judge": MTBenchJudgeJob, "reference_cache": ReferenceCacheJob,
}
