"""Rule `sft`: train one (backbone, objective, β) run; export an HF checkpoint per epoch."""

from giftlab import cli
from giftlab.data import read_problems
from giftlab.models import load_model, load_tokenizer
from giftlab.provenance import write_result
from giftlab.training.checkpoints import input_fingerprint
from giftlab.training.sft import SFTSettings, train_sft


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--base", required=True, help="base model directory or hub id")
    p.add_argument("--train", nargs="+", required=True, help="one or more DeepMath-schema jsonl files")
    p.add_argument("--val", required=True)
    p.add_argument("--out", required=True, help="output directory: epoch_<k>/ per epoch")
    p.add_argument("--work", required=True, help="resumable trainer state (not an output)")
    p.add_argument("--metrics", required=True)
    args = p.parse_args(argv)
    config = cli.setup(args)
    columns = ("question", config["solution_key"])
    objective_params = dict(config.get("objective_params") or {})
    if config.get("beta") is not None:
        objective_params["beta"] = config["beta"]
    metrics = train_sft(
        base_path=args.base, tokenizer=load_tokenizer(args.base), load_model=load_model,
        train_rows=[row for path in args.train for row in read_problems(path, columns)],
        val_rows=read_problems(args.val, columns),
        solution_key=config["solution_key"], method=config["method"],
        objective_params=objective_params, settings=SFTSettings.from_config(config["settings"], seed=config["seed"]),
        out_dir=args.out, work_dir=args.work,
        job_config={**config, "inputs": input_fingerprint([args.base, *args.train, args.val])})
    write_result(args.metrics, {"backbone": config["backbone"], "run": config["run"], **metrics}, config)


if __name__ == "__main__":
    cli.run(main)
