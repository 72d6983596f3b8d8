"""Rule `grpo`: GRPO (TRL) from the selected SFT epoch of one run; write the final policy.

A unified-paradigm run (``rl_method``: LUFFY or ReLIFT, giftlab.rl_methods) starts from the base model and also
trains on the RL rows' demonstrations (``solution_key``).

With ``--dynamics-benchmark FILE`` and ``grpo.eval_every`` > 0 the metrics also hold the RL
dynamics (pass@1 on ``grpo.eval_problems`` problems of it during training, a fixed random subset under
``grpo.eval_subset: random``; Figure 3).

On SIGTERM / SIGUSR1 (SLURM preemption or time limit) the run saves a complete checkpoint at the next optimiser
step and exits with code 75 without writing any output; its rerun resumes there (giftlab.training.preemption).
"""

import os
from pathlib import Path

from giftlab import cli
from giftlab.data import REQUIRED_COLUMNS, read_problems
from giftlab.jobs import GRPOJob
from giftlab.models import load_model, load_tokenizer
from giftlab.provenance import data_sha256, write_result


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--init", required=True, help="the policy GRPO starts from (an SFT epoch dir or a base model)")
    p.add_argument("--rl", required=True, help="RL prompts (DeepMath schema jsonl)")
    p.add_argument("--out", required=True)
    p.add_argument("--work", required=True, help="resumable trainer state (not an output)")
    p.add_argument("--metrics", required=True)
    p.add_argument("--dynamics-benchmark", default=None,
                   help="the main benchmark's file or folder, read as the evaluation reads it, for pass@1 during RL "
                        "(grpo.eval_every)")
    p.add_argument("--tensorboard", default=None, help="output directory: the run's TensorBoard events")
    p.add_argument("--steps", default=None, help="output CSV: loss, reward, KL, ... per optimiser step (dvc plots)")
    args = p.parse_args(argv)
    config = cli.setup(args)
    # the training stack is imported here, not at module level: the grading pool's workers (forkserver children) run
    # this module again as __mp_main__, and would each import torch and transformers for nothing
    from giftlab.training.checkpoints import input_fingerprint
    from giftlab.training.grpo import train_grpo
    from giftlab.training.preemption import Preempted, preempted_exit
    from giftlab.training.tracking import GRPO_FIELDS, plot_rows, publish, resolve_report_to, without_tracking

    # checked before any data or model loads (an unknown tracker or a missing package: one line naming the key)
    job = GRPOJob.from_config(config)
    resolve_report_to(job.grpo.get("report_to"), "grpo.report_to")
    try:
        metrics = train_grpo(init_path=args.init, load_model=load_model, tokenizer=load_tokenizer(args.init),
                             rl_rows=read_problems(args.rl, REQUIRED_COLUMNS + ((job.solution_key,) if job.solution_key
                                                                                else ())),
                             cfg=job.grpo, seed=job.seed, rl_method=job.rl_method, method_params=job.method_params,
                             solution_key=job.solution_key,
                             out_dir=args.out, work_dir=args.work,
                             job_config={**without_tracking(config), "inputs": input_fingerprint([args.init, args.rl])},
                             dynamics_benchmark=args.dynamics_benchmark)
    except Preempted as exc:
        preempted_exit(exc)
    if int(os.environ.get("RANK", 0)) == 0:
        publish(Path(args.work) / "tensorboard", args.tensorboard, plot_rows(metrics["log"], GRPO_FIELDS), args.steps,
                GRPO_FIELDS)
    write_result(args.metrics, {"backbone": job.backbone, "run": job.run, **metrics,
                                "data_sha256": data_sha256([args.rl])}, config)


if __name__ == "__main__":
    cli.run(main)
