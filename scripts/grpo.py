"""Rule `grpo`: GRPO (TRL) from the selected SFT epoch of one run; write the final policy.

With ``--dynamics-benchmark FILE`` and ``grpo.eval_every`` > 0 the metrics also hold the RL
dynamics (pass@1 on the file's first ``grpo.eval_problems`` problems during training; Figure 3).
"""

from giftlab import cli
from giftlab.data import REQUIRED_COLUMNS, read_problems
from giftlab.models import load_model, load_tokenizer
from giftlab.provenance import write_result
from giftlab.training.checkpoints import input_fingerprint
from giftlab.training.grpo import train_grpo


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--init", required=True, help="the policy GRPO starts from (an SFT epoch dir or a base model)")
    p.add_argument("--rl", required=True, help="RL prompts (DeepMath schema jsonl)")
    p.add_argument("--out", required=True)
    p.add_argument("--work", required=True, help="resumable trainer state (not an output)")
    p.add_argument("--metrics", required=True)
    p.add_argument("--dynamics-benchmark", default=None,
                   help="benchmark jsonl (id, prompt, gold, kind) for pass@1 during RL (grpo.eval_every)")
    args = p.parse_args(argv)
    config = cli.setup(args)
    metrics = train_grpo(init_path=args.init, load_model=load_model, tokenizer=load_tokenizer(args.init),
                         rl_rows=read_problems(args.rl, REQUIRED_COLUMNS), cfg=config["grpo"], seed=config["seed"],
                         out_dir=args.out, work_dir=args.work,
        job_config={**config, "inputs": input_fingerprint([args.init, args.rl])},
                         dynamics_benchmark=args.dynamics_benchmark)
    write_result(args.metrics, {"backbone": config["backbone"], "run": config["run"], **metrics}, config)


if __name__ == "__main__":
    cli.run(main)
