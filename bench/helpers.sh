# Sourced by the benchmarks after `BIN=...`: the helpers as the package
# ships them, static musl builds (see packaging/static-helpers.sh);
# AIOPS_BENCH_HELPERS=dynamic measures the glibc builds next to aiopsctl.
# shellcheck shell=bash
if [ "${AIOPS_BENCH_HELPERS:-static}" = static ]; then
  HELPERS=$(bash packaging/static-helpers.sh)
  export AIOPS_JAILER=$HELPERS/aiops-jailer AIOPS_AGENTD=$HELPERS/aiops-agentd
  echo "== helpers: static musl builds in $HELPERS"
else
  echo "== helpers: dynamic glibc builds in $BIN"
fi
