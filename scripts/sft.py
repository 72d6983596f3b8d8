"""Rule `sft`: train one (backbone, objective, β) run; export an HF checkpoint per epoch.

On SIGTERM / SIGUSR1 (SLURM preemption or time limit) the run saves a complete checkpoint at the next optimiser
step and exits with code 75 without writing any output; its rerun resumes there (giftlab.training.preemption).
"""

import os
from pathlib import Path

from giftlab import cli
from giftlab.data import read_problems
from giftlab.jobs import SFTJob
from giftlab.models import load_model, load_tokenizer
from giftlab.provenance import data_sha256, write_result


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--base", required=True, help="base model directory or hub id")
    p.add_argument("--train", nargs="+", required=True, help="one or more DeepMath-schema jsonl files")
    p.add_argument("--val", required=True)
    p.add_argument("--out", required=True, help="output directory: epoch_<k>/ per epoch")
    p.add_argument("--work", required=True, help="resumable trainer state (not an output)")
    p.add_argument("--metrics", required=True)
    p.add_argument("--tensorboard", default=None, help="output directory: the run's TensorBoard events")
    p.add_argument("--steps", default=None, help="output CSV: loss, lr, grad norm per logged step (dvc plots)")
    p.add_argument("--reference-cache", nargs="*", default=[],
                   help="sft.reference: cached: the base's log-probs over each --train file, in that order")
    args = p.parse_args(argv)
    config = cli.setup(args)
    # checked before any data or model loads (an unknown tracker or a missing package: one line naming the key)
    job = SFTJob.from_config(config)
    # imported here, not at module level, as in every script: a spawn/forkserver child runs the main module again
    from giftlab.training.checkpoints import input_fingerprint
    from giftlab.training.preemption import Preempted, preempted_exit
    from giftlab.training.sft import SFTSettings, train_sft
    from giftlab.training.tracking import SFT_FIELDS, plot_rows, publish, read_step_rows, without_tracking

    settings = SFTSettings.from_config(job.settings, seed=job.seed)
    columns = ("question", job.solution_key)
    objective_params = dict(job.objective_params)
    if job.beta is not None:
        objective_params["beta"] = job.beta
    try:
        metrics = train_sft(
            base_path=args.base, tokenizer=load_tokenizer(args.base), load_model=load_model,
            train_rows=[row for path in args.train for row in read_problems(path, columns)],
            val_rows=read_problems(args.val, columns),
            solution_key=job.solution_key, method=job.method,
            objective_params=objective_params, settings=settings,
            out_dir=args.out, work_dir=args.work,
            job_config={**without_tracking(config),
                        "inputs": input_fingerprint([args.base, *args.train, args.val, *args.reference_cache])},
            reference_cache=args.reference_cache, train_files=args.train)
    except Preempted as exc:
        preempted_exit(exc)
    if int(os.environ.get("RANK", 0)) == 0:
        work = Path(args.work)
        # up to this run's last step: a run stopped at sft.rl_epoch that resumed a longer run's work dir (whose log
        # goes on to sft.epochs) publishes only its own epochs' steps
        rows = read_step_rows(work / "steps.jsonl", up_to_step=metrics["steps"])
        publish(work / "tensorboard", args.tensorboard, plot_rows(rows, SFT_FIELDS), args.steps, SFT_FIELDS)
    write_result(args.metrics, {"backbone": job.backbone, "run": job.run, **metrics,
                                "data_sha256": data_sha256([*args.train, args.val])}, config)


if __name__ == "__main__":
    cli.run(main)
