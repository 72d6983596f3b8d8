"""The experiment grid as data: which runs exist, what each one is, and the jobs and files they make.

``Plan(config)`` is built once per Snakemake invocation (``workflow/rules/common.smk``); rules pass it a run's id
(``wildcards.run``) and ask for their job's config (:meth:`Plan.job`), their inputs and their targets, which the plan
reads from its run table (``Plan.runs[run]``, as rna-seq-star-deseq2 looks up ``units.loc[wildcards.sample]``). Nothing parses a run id to recover a
hyperparameter: method and β are fields of :class:`RunSpec`, and the reports get them from the jobs' configs
(:meth:`Plan.run_table`).

The grid (paper §4, Appendix E): one SFT run per objective of ``sft.methods`` (GIFT once per β of
``sft.gift_betas``), Direct SFT (plain SFT on the SFT and RL subsets, no RL), GRPO from each SFT run's epoch
``sft.rl_epoch`` (all, or those of ``grpo.runs``), Direct RL (GRPO from the base model), and the unified paradigms
of ``unified.methods`` (LUFFY, ReLIFT: the ``grpo`` rule from the base model with that RL method, final models of
Tables 1-2 only). The SFT and GIFT runs are the ones the analyses compare (Tables 3-4, Figures 1-3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from giftlab.cli import ConfigError
from giftlab.config import (DEFAULT_PASS_KS, EVAL_RULES, benchmarks, check_checkpoint_folder, eval_settings,
                            extra_models, mtbench_enabled)
from giftlab.grid import DIRECT_LABELS, DIRECT_SFT, STAGE_PAIRS, grid_runs, unified_runs
from giftlab.grid import RunSpec  # noqa: F401  (Plan.runs' values)
from giftlab.jobs import EngineSettings, EvalSettings
from giftlab.rowfiles import RowFileError, find_data
from giftlab.runtime_keys import RUNTIME_KEYS, drop_keys
from giftlab.tinyworld.corpus import BENCHMARK_NAMES as WORLD_BENCHMARKS

SFT_SETTING_KEYS = ("epochs", "batch_size", "lr", "max_length", "grad_accum", "lr_scheduler", "warmup_ratio",
                    "weight_decay", "adam_betas", "max_grad_norm", "loss_head", "loss_backend", "bf16",
                    "export_dtype", "drop_last")
RUNTIME_RULES = ("sft", "grpo", *EVAL_RULES, "evaluate_extra", "mtbench_judge")  # the rules whose jobs take them
TABLES = (1, 2, 3, 4)   # always; Table 5 (MT-Bench) where the config plans it (Plan.tables)
FIGURES = (1, 2, 3)
MTBENCH_TINY_QUESTIONS = "data/mtbench/tiny_questions.jsonl"
# one model's MT-Bench files under results/mtbench: its answers (+ summary), the judge's verdicts, its scores
MTBENCH_FILES = {"answers": "answers/{backbone}/{run}.jsonl", "answer_summary": "answers/{backbone}/{run}.json",
                 "judgements": "judgements/{backbone}/{run}.jsonl", "scores": "scores/{backbone}/{run}.json"}
SUMMARY = {"metrics": "results/summary/metrics.json", "val_loss": "results/summary/sft_val_loss.json",
           "pass1": "results/summary/rl_pass1.json", "provenance": "results/summary/summary.provenance.json"}
# The rules of each phase: what a phase's DVC stage lets Snakemake run (--allowed-rules). Every rule of the
# workflow belongs to exactly one phase but extra.smk's on-demand ones (checked by the tests).
PHASE_RULES = {
    "world": ["world"],
    "base": ["pretrain_base"],
    "split": ["split"],
    "sft": ["reference_cache", "sft"],
    "grpo": ["grpo"],
    "eval": list(EVAL_RULES),
    "analysis": ["consistency"],
    "mtbench": ["mtbench_questions", "mtbench_answer", "mtbench_judge"],
    "figures": ["figure1", "figure2", "figure3", "table", "rl_gain", "claims", "summary"],
}

WORLD_BENCHMARK_DIR = "data/tiny/benchmarks"  # the world rule writes the tiny benchmarks here (world.smk)


class UnknownName(KeyError):
    """A run id or backbone outside this config (a target naming another config's run, a typo): one readable line."""

    def __str__(self) -> str:
        return str(self.args[0])


class RunTable(dict):
    """{run id: RunSpec} of the grid; looking up an id it does not hold says which ids it does."""

    def __missing__(self, run):
        raise UnknownName(f"run {run!r} is not in this config's grid (its runs: {', '.join(self)})")


class Plan:
    """The grid of one config: runs, models, result paths, target lists and job configs."""

    def __init__(self, config: Mapping[str, Any]):
        self.config = config
        self.runs = RunTable(grid_runs(config))
        self.tiny = config["data"]["source"] == "tiny"
        # the backbones whose grid is built (every table and figure): all unless figures.backbones says otherwise
        self.backbones = list(config["figures"].get("backbones") or config["backbones"])
        # local copies of benchmarks (any profile; the tiny world's own benchmarks are its rule's outputs)
        self.bench_dir = config["eval"].get("benchmark_dir", "data/benchmarks")
        self.extra = extra_models(config)  # checkpoints the pipeline did not train (extra.smk)
        self.mtbench = mtbench_enabled(config)  # Table 5

    # -------------------------------------------------------------- runs
    def sft_runs(self) -> list[str]:
        return [r for r, spec in self.runs.items() if spec.sft]

    def rl_runs(self) -> list[str]:
        return [r for r, spec in self.runs.items() if spec.rl]

    def compared_runs(self) -> list[str]:
        return [r for r, spec in self.runs.items() if spec.compared]

    def unified_runs(self) -> list[str]:
        """The unified-paradigm runs (``unified.methods``): GRPO with another RL method, from the base model."""
        return unified_runs(self.runs)

    def final_models(self) -> list[tuple[str, str]]:
        """(stage, run) of every final policy of Tables 1-2: each RL run (Direct RL and the unified runs
        included), then Direct SFT."""
        return ([("rl", r) for r in self.rl_runs()]
                + [(s.final_stage, r) for r, s in self.runs.items() if s.sft and not s.rl and s.final_stage == "sft"])

    def run_table(self) -> dict[str, dict[str, Any]]:
        """{run: {strategy, method, beta, final_stage, label, order}}: what the reports need to label and order
        runs. ``label`` and ``order`` (registration order) come from the objectives' registry; a unified run's
        ``label`` and ``method_class`` (and its ``rl_method``) from the RL methods' registry, with no ``order``
        (like the Direct baselines: the reports place it among the paper's head rows)."""
        from giftlab.objectives import OBJECTIVES

        order = {name: i for i, name in enumerate(OBJECTIVES)}
        table = {}
        for run, spec in self.runs.items():
            if spec.rl_method is not None:
                from giftlab.rl_methods import get_method

                method = get_method(spec.rl_method)
                table[run] = {**spec.as_record(), "label": method.label, "method_class": method.method_class,
                              "order": None}
                continue
            objective = spec.strategy not in DIRECT_LABELS
            table[run] = {**spec.as_record(),
                          "label": OBJECTIVES[spec.method].label if objective else DIRECT_LABELS[spec.strategy],
                          "order": order[spec.method] if objective else None}
        return table

    def benchmarks(self, group: str = "all") -> list[str]:
        return benchmarks(self.config, group)

    # -------------------------------------------------------------- models
    def backbone(self, name: str) -> Mapping[str, Any]:
        """The config of backbone ``name`` (a target's wildcard: a typo is one line naming the backbones)."""
        if name not in self.config["backbones"]:
            raise UnknownName(f"backbone {name!r} is not in this config (its backbones: "
                              f"{', '.join(self.config['backbones'])})")
        return self.config["backbones"][name]

    def base_dir(self, backbone: str) -> str:
        spec = self.backbone(backbone)
        return f"models/base/{backbone}" if spec["source"] == "tiny" else spec["path"]

    def base_inputs(self, backbone: str) -> list[str]:
        """The DAG dependency on a base model: the pretrain rule's output, or nothing for hub/local models."""
        return [f"models/base/{backbone}"] if self.backbone(backbone)["source"] == "tiny" else []

    def sft_epoch_dir(self, backbone: str, run: str) -> str:
        return f"models/sft/{backbone}/{run}/epoch_{self.config['sft']['rl_epoch']}"

    def model(self, stage: str, backbone: str, run: str) -> tuple[list[str], str]:
        """(DAG inputs, model path) of the model of a (stage, backbone, run)."""
        if stage == "base":
            return self.base_inputs(backbone), self.base_dir(backbone)
        if stage == "sft":
            return [f"models/sft/{backbone}/{run}"], self.sft_epoch_dir(backbone, run)
        return [f"models/rl/{backbone}/{run}"], f"models/rl/{backbone}/{run}"

    def grpo_init(self, backbone: str, run: str) -> tuple[list[str], str]:
        """(DAG inputs, model path) GRPO starts from: the SFT epoch, or the base model (Direct RL, unified runs)."""
        if not self.runs[run].sft:
            return self.base_inputs(backbone), self.base_dir(backbone)
        return [f"models/sft/{backbone}/{run}"], self.sft_epoch_dir(backbone, run)

    def sft_stop_epoch(self, run: str) -> int | None:
        """``sft.rl_epoch`` for a run whose later epochs nothing reads, else None: the compared SFT and GIFT runs train
        every ``sft.epochs`` (Figure 1's validation curves; the summary's, on every backbone). The paper's other 7 runs
        per backbone (6 objectives, Direct SFT) are read at epoch 6 only: 4 of their 10 epochs (~22% of the grid's
        SFT) trained for nothing. Same checkpoints: the run keeps the ``epochs``-long LR schedule
        (giftlab.training.sft). ``sft.all_epochs``: none stops."""
        sft = self.config["sft"]
        if sft.get("all_epochs", False) or sft["rl_epoch"] >= sft["epochs"] or run in self.compared_runs():
            return None
        return sft["rl_epoch"]

    def sft_train_files(self, run: str) -> list[str]:
        return [f"data/splits/{name}.jsonl" for name in self.runs[run].sft_splits]

    def reads_reference_cache(self, run: str) -> bool:
        """Whether ``run``'s SFT reads the base's cached log-probs (sft.reference: cached, an objective needing them)."""
        from giftlab.objectives import OBJECTIVES

        spec = self.runs[run]
        return (self.config["sft"].get("reference", "exact") == "cached" and spec.sft
                and OBJECTIVES[spec.method].needs_ref)

    def reference_caches(self, backbone: str, run: str) -> list[str]:
        """The cached reference files ``run``'s SFT reads, one per training split in their order (none if it reads
        none)."""
        if not self.reads_reference_cache(run):
            return []
        return [self.reference_cache(backbone, name) for name in self.runs[run].sft_splits]

    @staticmethod
    def reference_cache(backbone: str, split: str, suffix: str = "safetensors") -> str:
        """The base's cached log-probs over a split (``suffix`` json: its summary)."""
        return f"results/sft/reference/{backbone}/{split}.{suffix}"

    def reference_cache_keys(self) -> list[tuple[str, str]]:
        """(backbone, split) of every reference cache the grid's SFT runs read."""
        return list(dict.fromkeys((bb, name) for bb in self.backbones for run in self.sft_runs()
                                  if self.reads_reference_cache(run) for name in self.runs[run].sft_splits))

    def reference_cache_outputs(self) -> list[str]:
        return [self.reference_cache(bb, split, ext) for bb, split in self.reference_cache_keys()
                for ext in ("safetensors", "json")]

    def pair_models(self, backbone: str, run: str, pair: str) -> tuple[tuple[list[str], str], tuple[list[str], str]]:
        """The (inputs, path) of the earlier and the later model of a consistency pair (``base_sft``, ``sft_rl``)."""
        earlier, later = pair.split("_")
        return self.model(earlier, backbone, run), self.model(later, backbone, run)

    def pair_inputs(self, backbone: str, run: str, pair: str) -> list[str]:
        (a_in, _), (b_in, _) = self.pair_models(backbone, run, pair)
        return list(dict.fromkeys(a_in + b_in))

    def problems(self) -> tuple[list[str], str]:
        """(DAG inputs, path) of the problem pool the split reads."""
        return (["data/tiny/problems.jsonl"], "data/tiny/problems.jsonl") if self.tiny else ([], self.config["data"]["path"])

    # -------------------------------------------------------------- benchmarks on disk
    def benchmark_files(self, group: str) -> dict[str, str]:
        """{benchmark: local file or folder} of a group: the tiny world's files (its rule's outputs), and the copies
        present in eval.benchmark_dir in any format giftlab.rowfiles reads (a benchmark without one loads from the
        hub)."""
        files = {}
        for name in self.benchmarks(group):
            path = self._world_benchmark(name) or self._copy_of(name)
            if path is not None:
                files[name] = str(path)
        return files

    def required_benchmark_copies(self) -> dict[str, tuple[str, str]]:
        """{benchmark: (path, why)} of the benchmarks that must have a copy in eval.benchmark_dir and have none: any
        but the world's in a tiny profile (offline), and those registered without a hub source (``needs_path``)."""
        from giftlab.evaluation.benchmarks import BENCHMARKS

        present, required = self.benchmark_files("all"), {}
        for name in self.benchmarks("all"):
            if name in present or not (self.tiny or BENCHMARKS[name].needs_path):
                continue
            why = "a tiny profile reads no hub" if self.tiny else "it has no hub source"
            docs = 'docs/architecture.md, "Adding a benchmark"' if self.tiny else "docs/scale.md, step 2"
            required[name] = (f"{self.bench_dir}/{name}.jsonl",
                              f"{name}'s local copy in eval.benchmark_dir: {why}; {docs}")
        return required

    def _copy_of(self, name: str):
        """Benchmark ``name``'s copy in eval.benchmark_dir, or None; two copies (x.jsonl and x.parquet) stop the plan
        in one line (which one a run read must not depend on a search order)."""
        try:
            return find_data(self.bench_dir, name)
        except RowFileError as exc:
            raise ConfigError(f"config error: eval.benchmark_dir: {exc}") from None

    def _world_benchmark(self, name: str) -> str | None:
        """The tiny world's file of benchmark ``name`` (a tiny profile's own benchmarks), else None."""
        return f"{WORLD_BENCHMARK_DIR}/{name}.jsonl" if self.tiny and name in WORLD_BENCHMARKS else None

    def benchmark_args(self, group: str) -> str:
        return " ".join(f"--benchmark-file {name}={path}" for name, path in self.benchmark_files(group).items())

    def dynamics_benchmark(self, run: str) -> list[str]:
        """The main benchmark's local file, read by the GRPO runs that track RL dynamics (Figure 3). The paper's copy
        must be in eval.benchmark_dir beforehand: a missing one stops the plan with its name."""
        if not self.tracks_dynamics(run):
            return []
        main = self.config["eval"]["main_benchmark"]
        found = self._world_benchmark(main) or self._copy_of(main)
        return [str(found or f"{self.bench_dir}/{main}.jsonl")]

    def _dynamics_file(self) -> str | None:
        """The main benchmark's file the GRPO runs that track RL dynamics read, or None when no run does."""
        tracking = [run for run in self.runs if self.tracks_dynamics(run)]
        return self.dynamics_benchmark(tracking[0])[0] if tracking else None

    def local_inputs(self) -> list[tuple[str, str, str]]:
        """(config key, path, what reads it and where the docs say to get it) of the files the grid reads that no rule
        makes (benchmark copies that must be local; the paper grid's Figure 3 copy and MT-Bench files), beside the
        bases and DeepMath (:func:`giftlab.config.check_local_paths`): checked before the plan, since Snakemake keeps a
        consumer's existing output when a missing input stops its producer (a workspace holding another config's
        tables would pass as done)."""
        files = [("eval.benchmarks", path, why) for path, why in self.required_benchmark_copies().values()]
        if self.tiny:
            return files
        dynamics = self._dynamics_file()
        if dynamics:
            files.append(("eval.main_benchmark", dynamics,
                          "its copy in eval.benchmark_dir, read by the GRPO runs that track RL dynamics for Figure 3; "
                          "docs/scale.md, step 2"))
        if self.mtbench:  # the answer jobs' inputs: the questions, then the reference answers where configured
            what = {"mtbench.questions": "MT-Bench's questions for Table 5; docs/scale.md, \"MT-Bench judge\"",
                    "mtbench.reference_answers": "FastChat's reference answers for Table 5; docs/scale.md, "
                                                 "\"MT-Bench judge\""}
            files += [(key, path, what[key]) for key, path in zip(what, self.mtbench_questions())]
        return files

    def phase_inputs(self) -> dict[str, list[str]]:
        """{phase (= its DVC stage): the local files it reads that no rule makes}: eval the benchmark copies in
        eval.benchmark_dir, grpo the Figure 3 copy, mtbench MT-Bench's files, split a local DeepMath-103K (the tiny
        world's own files are a rule's outputs). Each must be a dep of its DVC stage (:mod:`giftlab.dvc_deps`)."""
        from giftlab.data import looks_local

        dynamics = self._dynamics_file()
        inputs = {"eval": [path for name, path in self.benchmark_files("all").items()
                           if self._world_benchmark(name) is None],
                  "grpo": [dynamics] if dynamics and not dynamics.startswith(WORLD_BENCHMARK_DIR) else [],
                  "mtbench": [path for path in self.mtbench_questions() if path != MTBENCH_TINY_QUESTIONS]
                  if self.mtbench else []}
        data_path = self.config["data"].get("path")
        inputs["split"] = [data_path] if not self.tiny and data_path and looks_local(data_path) else []
        return inputs

    # -------------------------------------------------------------- result files
    def eval_summary(self, stage: str, backbone: str, run: str, benchmark: str | None = None) -> str:
        benchmark = benchmark or self.config["eval"]["main_benchmark"]
        return f"results/eval/{stage}/{backbone}/{run}/{benchmark}.summary.json"

    def eval_samples(self, stage: str, backbone: str, run: str, benchmark: str) -> str:
        return f"results/eval/{stage}/{backbone}/{run}/{benchmark}.samples.jsonl"

    def final_eval_keys(self, group: str = "all", backbones=None) -> list[tuple[str, str, str, str]]:
        """(stage, backbone, run, benchmark) of every final policy's evaluation (Tables 1-2): RL runs, Direct RL,
        Direct SFT."""
        return [(stage, bb, run, bench) for bb in backbones or self.backbones
                for stage, run in self.final_models() for bench in self.benchmarks(group)]

    def pre_rl_eval_keys(self, backbones=None) -> list[tuple[str, str, str, str]]:
        """The SFT checkpoints (the epoch RL starts from) of the compared runs on the math benchmarks (Table 3)."""
        return [("sft", bb, run, bench) for bb in backbones or self.backbones
                for run in self.compared_runs() for bench in self.benchmarks("math")]

    def eval_job_keys(self) -> list[tuple[str, str, str, str]]:
        """(stage, backbone, run, benchmark) of every evaluation the grid's evaluation jobs write: the final policies'
        and, before RL, every benchmark of the ``evaluate_pre_rl`` rule (the reasoning ones: Table 3 reads the math
        ones, rl_gain all of them), not only Table 3's."""
        pre_rl = [("sft", bb, run, bench) for bb in self.backbones for run in self.compared_runs()
                  for bench in self.benchmarks(EVAL_RULES["evaluate_pre_rl"]["group"])]
        return list(dict.fromkeys(self.final_eval_keys() + pre_rl))

    def final_evals(self, group: str = "all", backbones=None) -> list[str]:
        return [self.eval_summary(*key) for key in self.final_eval_keys(group, backbones)]

    def final_eval_samples(self) -> list[str]:
        """The samples of every final policy's evaluation, in :meth:`final_evals` order (the claims' paired tests)."""
        return [self.eval_samples(*key) for key in self.final_eval_keys()]

    def pre_rl_evals(self, backbones=None) -> list[str]:
        return [self.eval_summary(*key) for key in self.pre_rl_eval_keys(backbones)]

    def pre_rl_eval_samples(self) -> list[str]:
        """The samples of the pre-RL evaluations, in :meth:`pre_rl_evals` order (claim 2's paired test)."""
        return [self.eval_samples(*key) for key in self.pre_rl_eval_keys()]

    def consistency_keys(self, backbones=None) -> list[tuple[str, str, str]]:
        """(backbone, run, stage pair) of every consistency result: Base -> SFT and SFT -> RL of each compared run."""
        return [(bb, run, pair) for bb in backbones or self.backbones for run in self.compared_runs()
                for pair in STAGE_PAIRS]

    @staticmethod
    def consistency_result(backbone: str, run: str, pair: str) -> str:
        return f"results/consistency/{backbone}/{run}/{pair}.json"

    def consistency_results(self, backbones=None) -> list[str]:
        return [self.consistency_result(*key) for key in self.consistency_keys(backbones)]

    def sft_metrics(self, runs, backbones=None) -> list[str]:
        return [f"results/sft/{bb}/{run}/metrics.json" for bb in backbones or self.backbones for run in runs]

    def rl_metrics(self, runs, backbones=None) -> list[str]:
        return [f"results/rl/{bb}/{run}/metrics.json" for bb in backbones or self.backbones for run in runs]

    def table_benchmarks(self, n: int) -> list[str]:
        return {1: self.benchmarks("reasoning"), 2: self.benchmarks("ood"), 3: self.benchmarks("math")}.get(n, [])

    def tables(self) -> tuple[int, ...]:
        """The paper tables this config builds: 1-4, and 5 when it plans MT-Bench (``mtbench``)."""
        return TABLES + ((5,) if self.mtbench else ())

    def table_inputs(self, n: int) -> list[str]:
        if n in (1, 2):
            return self.final_evals("reasoning" if n == 1 else "ood")
        if n == 5:
            return self.mtbench_scores()
        return self.pre_rl_evals() if n == 3 else self.consistency_results()

    # -------------------------------------------------------------- Table 5 (MT-Bench)
    def mtbench_models(self) -> list[tuple[str, str]]:
        """(backbone, run) of every model Table 5 judges: the final policies of the SFT-then-RL runs (the paper's
        rows), of the objectives in ``mtbench.methods`` when it names some; none when the config plans no Table 5."""
        if not self.mtbench:
            return []
        methods = self.config["mtbench"].get("methods") or None
        return [(bb, run) for bb in self.backbones for run, spec in self.runs.items()
                if spec.sft and spec.rl and (methods is None or spec.method in methods)]

    def mtbench_questions(self) -> list[str]:
        """The questions file (the tiny rule's output, or the config's local copy) and FastChat's reference answers
        when configured: DAG inputs, so a missing copy stops the plan naming it."""
        section = self.config["mtbench"]
        questions = section["questions"]
        return [MTBENCH_TINY_QUESTIONS if questions == "tiny" else questions,
                *([section["reference_answers"]] if section.get("reference_answers") else [])]

    @staticmethod
    def mtbench_file(kind: str, backbone: str, run: str) -> str:
        """One model's MT-Bench file of ``kind`` (a key of ``MTBENCH_FILES``)."""
        return "results/mtbench/" + MTBENCH_FILES[kind].format(backbone=backbone, run=run)

    def mtbench_scores(self) -> list[str]:
        return [self.mtbench_file("scores", bb, run) for bb, run in self.mtbench_models()]

    def fig1_backbones(self) -> list[str]:
        """Figure 1's panels: ``figures.fig1.backbones`` (their order) of the grid's backbones. Only those the grid
        builds: the paper profile's [llama, qwen] under ``figures.backbones: [qwen]`` planned Llama's SFT, GRPO and
        evaluations for Figure 1 alone."""
        wanted = self.config["figures"]["fig1"].get("backbones") or self.backbones
        return [bb for bb in wanted if bb in self.backbones]

    def fig1_inputs(self) -> dict[str, list[str]]:
        runs, backbones = self.compared_runs(), self.fig1_backbones()
        return {"sft_metrics": self.sft_metrics(runs, backbones),
                "rl_evals": [self.eval_summary("rl", bb, r, bench) for bb in backbones for r in runs
                             for bench in self.benchmarks("math")]}

    def main_rl_evals(self) -> list[str]:
        """The compared runs after RL on the main benchmark (results/summary, for `dvc metrics`)."""
        return [self.eval_summary("rl", bb, r) for bb in self.backbones for r in self.compared_runs()]

    def rl_gain_samples(self, stage: str) -> list[str]:
        """The samples rl_gain pairs: before (``sft``) or after (``rl``) GRPO, in :meth:`rl_gain_pairs` order."""
        return [self.eval_samples(stage, bb, run, bench) for bb, run, bench in self.rl_gain_pairs()]

    def rl_gain_pairs(self) -> list[tuple[str, str, str]]:
        """(backbone, run, benchmark) of the compared runs on the reasoning benchmarks: before vs after GRPO."""
        return [(bb, run, bench) for bb in self.backbones for run in self.compared_runs()
                for bench in self.benchmarks("reasoning")]

    def all_targets(self) -> list[str]:
        """Every table and figure, the claims, and the small files DVC reads as metrics/plots."""
        figures = [f"figures/fig{n}.{ext}" for n in FIGURES for ext in ("pdf", "png", "provenance.json")]
        tables = [f"results/tables/table{n}.{ext}" for n in self.tables()
                  for ext in ("csv", "md", "tex", "provenance.json")]
        rl_gain = [f"results/tables/rl_gain.{ext}" for ext in ("csv", "md", "tex", "provenance.json")]
        return [*figures, *tables, *rl_gain, "results/tables/claims.md", "results/tables/claims.provenance.json",
                *SUMMARY.values()]

    @staticmethod
    def world_benchmark_files() -> list[str]:
        """The tiny benchmarks the world rule writes (world.smk; the tiny MT-Bench questions read them too)."""
        return [f"{WORLD_BENCHMARK_DIR}/{name}.jsonl" for name in WORLD_BENCHMARKS]

    def phase_outputs(self, phase: str) -> list[str]:
        """What a phase (a DVC stage, phases.smk) owns over the grid."""
        bbs = self.backbones
        if phase == "world":
            return (["data/tiny/problems.jsonl", "data/tiny/pretrain.jsonl", "data/tiny/tokenizer",
                     *self.world_benchmark_files(), "results/world.json"] if self.tiny else [])
        if phase == "base":
            tiny = [bb for bb in bbs if self.config["backbones"][bb]["source"] == "tiny"]
            return [p for bb in tiny for p in (f"models/base/{bb}", f"results/pretrain/{bb}.json")]
        if phase == "split":
            return [f"data/splits/{name}.jsonl" for name in ("sft", "rl", "val")] + ["results/split.json"]
        if phase in ("sft", "grpo"):
            stage, runs = ("sft", self.sft_runs()) if phase == "sft" else ("rl", self.rl_runs())
            return ([p for bb in bbs for run in runs
                     for p in (f"models/{stage}/{bb}/{run}", f"results/{stage}/{bb}/{run}/metrics.json",
                               f"results/{stage}/{bb}/{run}/tensorboard", f"results/steps/{stage}/{bb}/{run}.csv")]
                    + (self.reference_cache_outputs() if phase == "sft" else []))
        if phase == "eval":
            return [p for key in self.eval_job_keys() for p in (self.eval_summary(*key), self.eval_samples(*key))]
        if phase == "analysis":
            return self.consistency_results()
        if phase == "mtbench":
            tiny = ([MTBENCH_TINY_QUESTIONS, MTBENCH_TINY_QUESTIONS.replace(".jsonl", ".provenance.json")]
                    if self.mtbench and self.config["mtbench"]["questions"] == "tiny" else [])
            return tiny + [self.mtbench_file(kind, bb, run) for bb, run in self.mtbench_models()
                           for kind in MTBENCH_FILES]
        if phase == "figures":
            return list(dict.fromkeys(self.all_targets()))
        raise KeyError(f"no phase {phase!r} (one of {', '.join(PHASE_RULES)})")

    def grid_outputs(self) -> list[str]:
        """Everything the phases own: the complete grid (target phase_all)."""
        return [p for phase in PHASE_RULES for p in self.phase_outputs(phase)]

    # -------------------------------------------------------------- what each output records
    def recorded_configs(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(path, rule, job config) of every output of the grid that records the config it was made with
        (``provenance.config``: result JSONs and the sidecars of tables and figures), with the job config the current
        config asks for: what :mod:`giftlab.stale` compares."""
        out: list[tuple[str, str, dict[str, Any]]] = []

        def add(path: str, rule: str, wildcards: Mapping[str, str] | None = None) -> None:
            out.append((path, rule, self.job(rule, wildcards)))

        if self.tiny:
            add("results/world.json", "world")
        for bb in self.backbones:
            if self.config["backbones"][bb]["source"] == "tiny":
                add(f"results/pretrain/{bb}.json", "pretrain_base", {"backbone": bb})
        add("results/split.json", "split")
        for bb, split in self.reference_cache_keys():
            add(self.reference_cache(bb, split, "json"), "reference_cache", {"backbone": bb, "split": split})
        for bb in self.backbones:
            for run in self.sft_runs():
                add(f"results/sft/{bb}/{run}/metrics.json", "sft", {"backbone": bb, "run": run})
            for run in self.rl_runs():
                add(f"results/rl/{bb}/{run}/metrics.json", "grpo", {"backbone": bb, "run": run})
        for stage, bb, run, bench in self.eval_job_keys():
            rule = self.eval_rule(stage, run)
            job = self.job(rule, {"stage": stage, "backbone": bb, "run": run})
            out.append((self.eval_summary(stage, bb, run, bench), rule, EvalSettings.of_benchmark(job, bench)))
        for bb, run, pair in self.consistency_keys():
            add(self.consistency_result(bb, run, pair), "consistency", {"backbone": bb, "run": run, "pair": pair})
        if self.mtbench and self.config["mtbench"]["questions"] == "tiny":
            add(MTBENCH_TINY_QUESTIONS.replace(".jsonl", ".provenance.json"), "mtbench_questions")
        for bb, run in self.mtbench_models():
            add(self.mtbench_file("answer_summary", bb, run), "mtbench_answer", {"backbone": bb, "run": run})
            add(self.mtbench_file("scores", bb, run), "mtbench_judge", {"backbone": bb, "run": run})
        for n in self.tables():
            add(f"results/tables/table{n}.provenance.json", "table", {"n": str(n)})
        for n in FIGURES:
            add(f"figures/fig{n}.provenance.json", f"figure{n}")
        add("results/tables/rl_gain.provenance.json", "rl_gain")
        add("results/tables/claims.provenance.json", "claims")
        add(SUMMARY["provenance"], "summary")
        return out

    def checkpoint_outputs(self) -> list[tuple[str, str]]:
        """(checkpoint folder output, rule) of every model the grid trains: the tiny bases, each SFT run's folder
        (its epochs inside), each RL run's policy."""
        out = [(f"models/base/{bb}", "pretrain_base") for bb in self.backbones
               if self.config["backbones"][bb]["source"] == "tiny"]
        out += [(f"models/sft/{bb}/{run}", "sft") for bb in self.backbones for run in self.sft_runs()]
        return out + [(f"models/rl/{bb}/{run}", "grpo") for bb in self.backbones for run in self.rl_runs()]

    def eval_rule(self, stage: str, run: str) -> str:
        """The evaluation rule (EVAL_RULES) whose job evaluates ``run``'s model at ``stage``."""
        if run in self.runs and self.runs[run].cell == DIRECT_SFT:
            return "evaluate_direct_sft"
        return "evaluate" if stage == "rl" else "evaluate_pre_rl"

    # -------------------------------------------------------------- checkpoints the pipeline did not train
    def extra_model(self, name: str) -> tuple[list[str], str]:
        """(DAG inputs, path): a local folder is an input (its changes rerun the evaluation); a hub id is not. Checked
        when its jobs are planned (only then: a config may keep models.extra for later): a missing folder, or one
        that is no checkpoint, is one line before any job."""
        if name not in self.extra:
            raise UnknownName(f"models.extra has no {name!r} (its models: {', '.join(self.extra) or 'none'})")
        path = self.extra[name]["path"]
        local = check_checkpoint_folder(f"models.extra.{name}.path", path, ".",
                                        "a checkpoint folder; an SFT run's are its epoch_<k> subfolders")
        return ([path] if local else []), path

    def extra_results(self) -> list[str]:
        evals = [f"results/extra/eval/{name}/{bench}.summary.json" for name in self.extra
                 for bench in self.benchmarks("all")]
        return evals + [f"results/extra/consistency/{n}.json" for n, spec in self.extra.items() if spec.get("backbone")]

    def _evaluate_extra_job(self, name) -> dict:
        settings = {bench: drop_keys(eval_settings(self.config["eval"], bench), RUNTIME_KEYS["eval"])
                    for bench in self.benchmarks("all")}
        return {"seed": self.config["seed"], "stage": "extra", "run": name,
                "backbone": self.extra[name].get("backbone"), "benchmarks": settings}

    def _consistency_extra_job(self, name) -> dict:
        return self._consistency_job(self.extra[name]["backbone"], name, "base_extra")

    @staticmethod
    def reporting_code(package) -> list[str]:
        """What every table and figure script runs: giftlab.reporting and the modules below it that it imports
        (the plot and table rules depend on these files, so a change there redraws them, in seconds)."""
        package = Path(package)
        files = [p for p in (package / "reporting").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        return sorted(str(p) for p in [*files, *(package / f"{m}.py" for m in ("stats", "jobs", "grid"))])

    # -------------------------------------------------------------- job configs
    def job(self, rule: str, wildcards: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The config of one job of ``rule``: the section of the config that shapes it and nothing else, so that
        Snakemake's params trigger reruns exactly the jobs whose section changed."""
        wildcards = dict(wildcards or {})
        if rule in EVAL_RULES:
            return self._eval_job(rule, **wildcards)
        builders = {
            "world": self._world_job, "pretrain_base": self._pretrain_base_job, "split": self._split_job,
            "sft": self._sft_job, "reference_cache": self._reference_cache_job, "grpo": self._grpo_job,
            "consistency": self._consistency_job, "figure1": self._fig1_job, "figure2": self._figure_job,
            "figure3": self._figure_job, "summary": self._figure_job, "claims": self._claims_job,
            "rl_gain": self._rl_gain_job, "table": self._table_job, "mtbench_questions": self._mtbench_questions_job,
            "mtbench_answer": self._mtbench_answer_job, "mtbench_judge": self._mtbench_judge_job,
            "evaluate_extra": self._evaluate_extra_job, "consistency_extra": self._consistency_extra_job,
            "table_extra": self._table_extra_job}
        if rule not in builders:
            raise KeyError(f"no job config for rule {rule!r}")
        return builders[rule](**wildcards)

    def runtime(self, rule: str) -> dict[str, Any]:
        """The runtime settings (:data:`RUNTIME_KEYS`) of ``rule``'s jobs, nested as in their job configs (the same
        for every job of the rule); {} for rules that have none."""
        if rule == "sft":
            return {"settings": _pick(self.config["sft"], RUNTIME_KEYS["sft"])}
        if rule == "grpo":
            return {"grpo": _pick(self.config["grpo"], RUNTIME_KEYS["grpo"])}
        if rule in EVAL_RULES or rule == "evaluate_extra":
            spec = EVAL_RULES.get(rule, {"group": "all", "pre_rl": False})
            return {"benchmarks": {name: _pick(eval_settings(self.config["eval"], name, pre_rl=spec["pre_rl"]),
                                               RUNTIME_KEYS["eval"]) for name in self.benchmarks(spec["group"])}}
        if rule == "mtbench_judge":
            return {"judge": _pick((self.config.get("mtbench") or {}).get("judge") or {}, RUNTIME_KEYS["judge"])}
        return {}

    def _world_job(self) -> dict:
        return {"seed": self.config["seed"], **self.config.get("world", {})}

    def _pretrain_base_job(self, backbone) -> dict:
        spec = {k: v for k, v in self.backbone(backbone).items() if k != "source"}
        return {"seed": self.config["seed"], "backbone": backbone, **spec, "pretrain": self.config["pretrain"]}

    def _split_job(self) -> dict:
        data = self.config["data"]
        job = {"seed": self.config["seed"], "split": data["split"], "solution_key": data["solution_key"]}
        if data.get("instruction"):  # only when set: unchanged params for existing runs
            job["instruction"] = True
        return job

    def train_seed(self, run: str) -> int:
        """The seed a run's SFT and GRPO train with: its replicate's seed (``seeds``), else the config's."""
        seed = self.runs[run].seed
        return self.config["seed"] if seed is None else seed

    def _sft_job(self, backbone, run) -> dict:
        spec, sft = self.runs[run], self.config["sft"]
        settings = {k: sft[k] for k in SFT_SETTING_KEYS if k in sft}
        if self.reads_reference_cache(run):  # only then: the exact runs' configs (and outputs) stay as they were
            settings["reference"] = "cached"
        stop = self.sft_stop_epoch(run)
        if stop is not None:  # only then, as above
            settings["stop_epoch"] = stop
        return {"seed": self.train_seed(run), "backbone": backbone, "run": run, "method": spec.method,
                "beta": spec.beta, "solution_key": self.config["data"]["solution_key"],
                "objective_params": sft.get("objective_params", {}).get(spec.method, {}), "settings": settings}

    def _reference_cache_job(self, backbone, split) -> dict:
        sft = self.config["sft"]
        return {"seed": self.config["seed"], "backbone": backbone, "split": split,
                "solution_key": self.config["data"]["solution_key"], "max_length": sft["max_length"],
                "top_k": sft.get("reference_top_k", 64), "batch_size": sft["batch_size"]}

    def tracks_dynamics(self, run: str) -> bool:
        """RL dynamics (Figure 3) are measured for the compared runs only (grpo.eval_every > 0)."""
        return bool(self.config["grpo"].get("eval_every")) and self.runs[run].compared

    def _grpo_job(self, backbone, run) -> dict:
        # Only what shapes this job: not the grid selection (runs, direct_rl), and no dynamics settings for runs
        # that do not track them, so changing those reruns nothing else.
        grpo = {k: v for k, v in self.config["grpo"].items() if k not in ("runs", "direct_rl", *RUNTIME_KEYS["grpo"])}
        if not self.tracks_dynamics(run):
            grpo = {k: v for k, v in grpo.items() if not k.startswith("eval_")}
        job = {"seed": self.train_seed(run), "backbone": backbone, "run": run,
               "sft_epoch": self.config["sft"]["rl_epoch"] if self.runs[run].sft else None, "grpo": grpo}
        rl_method = self.runs[run].rl_method
        if rl_method is not None:  # a unified run only: every other GRPO job's config stays as it was (no rerun)
            from giftlab.rl_methods import get_method

            job["rl_method"] = rl_method
            job["method_params"] = get_method(rl_method).check((self.config.get("unified") or {}).get(rl_method))
            job["solution_key"] = self.config["data"]["solution_key"]  # the demonstrations LUFFY/ReLIFT train on
        return job

    def _eval_job(self, rule: str, stage, backbone, run) -> dict:
        """An evaluation rule's job (EVAL_RULES): each benchmark's sampling settings (before RL with
        eval.pre_rl merged in, for Table 3's pass@k)."""
        spec = EVAL_RULES[rule]
        settings = {name: drop_keys(eval_settings(self.config["eval"], name, pre_rl=spec["pre_rl"]),
                                    RUNTIME_KEYS["eval"])
                    for name in self.benchmarks(spec["group"])}
        return {"seed": self.config["seed"], "stage": stage, "backbone": backbone, "run": run,
                "benchmarks": settings}

    def _consistency_job(self, backbone, run, pair) -> dict:
        ev = self.config["eval"]
        return {"seed": self.config["seed"], "backbone": backbone, "run": run, "stage_pair": pair,
                "solution_key": self.config["data"]["solution_key"],
                "max_examples": ev.get("consistency_examples", 200), "max_length": self.config["sft"]["max_length"],
                "geometry": ev.get("consistency_geometry", "hidden"),
                **({"dtype": ev["consistency_dtype"]} if ev.get("consistency_dtype") else {})}

    def _figure_job(self) -> dict:
        return {"seed": self.config["seed"], "backbones": self.backbones,
                "benchmark": self.config["eval"]["main_benchmark"], "run_specs": self.run_table()}

    def _claims_job(self) -> dict:
        """The figures' job, Table 1's benchmarks (what the claim GIFT vs the unified paradigms checks) and the cells
        Table 1 reports at another pass@k (eval.report_metric: claims 1 and 4 judge those at it)."""
        report_metric = self.config["eval"].get("report_metric")
        return {**self._figure_job(), "reasoning_benchmarks": self.benchmarks("reasoning"),
                **({"report_metric": report_metric} if report_metric else {})}

    def _fig1_job(self) -> dict:
        return {"seed": self.config["seed"], "backbones": self.fig1_backbones(),
                "benchmarks": self.benchmarks("math")}

    def _rl_gain_job(self) -> dict:
        return {"seed": self.config["seed"], "pairs": self.rl_gain_pairs(), "run_specs": self.run_table()}

    def _table_job(self, n) -> dict:
        n = int(n)
        job = {"seed": self.config["seed"], "table": n, "backbones": self.backbones,
               "benchmarks": self.table_benchmarks(n), "run_specs": self.run_table()}
        if n == 3:
            job["ks"] = list(self.config["eval"].get("pre_rl", {}).get("ks", DEFAULT_PASS_KS))
        if n in (1, 2) and self.config["eval"].get("report_metric"):
            job["report_metric"] = self.config["eval"]["report_metric"]
        return job

    def _mtbench_questions_job(self) -> dict:
        section = self.config["mtbench"]
        return {"seed": self.config["seed"], "world": dict(self.config.get("world") or {}),
                "n_dialogues": section.get("n_dialogues", 24),
                **({"categories": section["categories"]} if "categories" in section else {})}

    def _mtbench_answer_job(self, backbone, run) -> dict:
        """The answers of one final policy: MT-Bench's sampling (``mtbench``), the evaluation's engine (``eval``)."""
        section, ev = self.config["mtbench"], self.config["eval"]
        return {"seed": self.config["seed"], "backbone": backbone, "run": run, "stage": "rl",
                "max_new_tokens": section["max_new_tokens"], "temperatures": dict(section.get("temperatures") or {}),
                **({"temperature": section["temperature"]} if "temperature" in section else {}),
                **{k: ev[k] for k in EngineSettings.KEYS if k in ev}}

    def _mtbench_judge_job(self, backbone, run) -> dict:
        return {"seed": self.config["seed"], "backbone": backbone, "run": run,
                "judge": drop_keys(self.config["mtbench"]["judge"], RUNTIME_KEYS["judge"])}

    def _table_extra_job(self) -> dict:
        return {"seed": self.config["seed"], "table": "extra", "benchmarks": self.benchmarks("all")}


def _pick(section: Mapping[str, Any], keys) -> dict[str, Any]:
    return {k: section[k] for k in keys if k in section}
