#!/usr/bin/env bash
# Run after `dvc pull` / `dvc checkout` / `git checkout` + `dvc checkout`, before `snakemake`.
#
# DVC restores file *contents* but not modification times, and Snakemake's bookkeeping
# (.snakemake/metadata) is local to each clone. Right after a pull an input can therefore look newer
# than its output and `snakemake` would recompute (e.g. retrain GRPO) what DVC just restored.
# This script first asks DVC whether the workspace matches dvc.lock (every restored output is the
# one recorded for the current code and params); only then does it let Snakemake mark those outputs
# as up to date (`snakemake --touch --forceall`, which also writes the .snakemake_timestamp markers of directory
# outputs -- ignored by DVC via .dvcignore). Afterwards `snakemake -n` and `dvc status` schedule nothing.
#
#   scripts/after_pull.sh                  touch everything the phases own (target phase_all)
#   scripts/after_pull.sh phase_sft ...    only these phases (after `dvc pull --with-deps sft`): DVC checks
#                                          their stages and the stages upstream of them
#   scripts/after_pull.sh phase_sft --configfile config/paper.yaml    another profile's outputs
# Targets and config files may come in any order: the script hands Snakemake the targets after `--`, so
# none is read as one more --configfile. Other Snakemake options pass through; give them as --opt=value.
set -euo pipefail
cd "$(dirname "$0")/.."
export DVC_NO_ANALYTICS=1
for tool in dvc snakemake; do  # else "command not found" would read as a workspace that does not match dvc.lock
  if ! command -v "$tool" >/dev/null; then
    echo "after_pull: no '$tool' on PATH: activate the project's virtualenv (README, set-up) first." >&2
    exit 2
  fi
done

targets=()
options=()
configfiles=()
reading_configfiles=false
for arg in "$@"; do
  if [ "$arg" = "--configfile" ] || [ "$arg" = "--configfiles" ]; then
    reading_configfiles=true
  elif [[ "$arg" == -* ]]; then
    reading_configfiles=false
    options+=("$arg")
  elif $reading_configfiles && [ -f "$arg" ]; then
    configfiles+=("$arg")
  else
    reading_configfiles=false
    targets+=("$arg")
  fi
done
if [ ${#targets[@]} -eq 0 ]; then
  targets=(phase_all)
fi
# What DVC must have restored: the stages behind phase targets (phase_sft -> stage sft) with their upstream
# stages, or everything (phase_all, or a target that is no phase).
stages=()
for target in "${targets[@]}"; do
  if [[ "$target" == phase_* && "$target" != phase_all ]]; then
    stages+=("${target#phase_}")
  else
    stages=()
    break
  fi
done
status=(dvc status)
if [ ${#stages[@]} -gt 0 ]; then
  known=$(dvc stage list --name-only)
  for stage in "${stages[@]}"; do
    if ! grep -qx "$stage" <<<"$known"; then
      echo "after_pull: phase_$stage has no DVC stage '$stage' in this dvc.yaml (its stages: $(echo $known))." >&2
      exit 2
    fi
  done
  status+=(--with-deps "${stages[@]}")
fi
if ! "${status[@]}" --quiet; then
  "${status[@]}" >&2 || true
  echo "after_pull: the workspace does not match dvc.lock (above); not touching anything." >&2
  echo "after_pull: run 'dvc pull${stages[*]:+ --with-deps ${stages[*]}}' (or 'dvc checkout'; with --force where an output was changed here, which DVC otherwise refuses to overwrite), or 'dvc repro' to rebuild what changed." >&2
  exit 1
fi
if [ ${#configfiles[@]} -gt 0 ]; then
  options+=(--configfile "${configfiles[@]}")
fi
# --forceall: every job of the targets records its metadata (its params included), not only those Snakemake finds out
# of date; without it the clone could not tell a later config change from another config's outputs.
snakemake --touch --forceall --quiet "${options[@]}" -- "${targets[@]}"
echo "after_pull: Snakemake now treats the DVC-restored outputs as up to date." >&2
