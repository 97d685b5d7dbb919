#!/bin/bash
# Run the lines of a sweep file one after another on this machine, then compare them.
#
#   bash jobs/compare_local.sh jobs/compare_fmnist.txt runs/compare_fmnist [RANKS]
#
# Each line is a config file and overrides (the format of jobs/sweep.sbatch); its run goes
# to OUT/<output.name of the line>. Finished runs are skipped, so the script can be run again
# after an interruption. RANKS > 1 launches the venv's mpiexec. The table at the end is
# `python -m hpc_fedprune compare --out OUT/compare OUT/*/run.h5`.
set -euo pipefail
sweep=${1:?usage: compare_local.sh SWEEP_FILE OUT_DIR [RANKS]}
out=${2:?usage: compare_local.sh SWEEP_FILE OUT_DIR [RANKS]}
ranks=${3:-1}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
launch=("$python")
if ((ranks > 1)); then launch=("$(dirname "$python")/mpiexec" -n "$ranks" "$python"); fi

while IFS= read -r line; do
    [[ -z ${line// } || $line == \#* ]] && continue
    eval "words=($line)"
    name=$(printf '%s\n' "${words[@]}" | sed -n 's/^output\.name=//p' | tail -n 1)
    [[ -n $name ]] || { echo "line without output.name=: $line" >&2; exit 2; }
    dir=$out/$name
    if [[ -f $dir/run.h5 ]] && "$python" -c "import h5py,sys; \
sys.exit(h5py.File(sys.argv[1], 'r').attrs.get('status') != 'finished')" "$dir/run.h5"; then
        echo "$name: finished, skipped"
        continue
    fi
    config=()
    if [[ ${words[0]} != *=* ]]; then config=(--config "${words[0]}"); words=("${words[@]:1}"); fi
    echo "$name: running"
    "${launch[@]}" -m hpc_fedprune run "${config[@]}" --out "$dir" "${words[@]}" \
        output.progress=false
done <"$sweep"
"$python" -m hpc_fedprune compare --out "$out/compare" "$out"/*/run.h5
