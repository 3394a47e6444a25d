# Sourced by the benchmarks after `BIN=...`: aiopsctl, the jailer and agentd
# as the package ships them, static musl builds (see
# packaging/static-build.sh), with CTL set to that aiopsctl;
# AIOPS_BENCH_BUILD=dynamic measures the glibc builds in $BIN instead.
# STATIC is the static builds' directory either way (bench/run.sh builds
# its floor example there).
# shellcheck shell=bash disable=SC2034  # CTL and STATIC are used by the scripts that source this
STATIC=$(bash packaging/static-build.sh)
if [ "${AIOPS_BENCH_BUILD:-static}" = static ]; then
  export AIOPS_JAILER=$STATIC/aiops-jailer AIOPS_AGENTD=$STATIC/aiops-agentd
  CTL=$STATIC/aiopsctl
  echo "== builds: static musl aiopsctl and helpers in $STATIC"
else
  CTL=$BIN/aiopsctl
  echo "== builds: dynamic glibc builds in $BIN"
fi

# bwrap with the closest equivalent of the restrictive profile, for the
# workspace $1 (bench/run.sh and bench/ab.sh measure against it).
bwrap_restrictive() {
  echo "bwrap --unshare-all --die-with-parent --new-session --cap-drop ALL --clearenv \
  --ro-bind /usr /usr --ro-bind /etc /etc --symlink usr/bin /bin --symlink usr/lib /lib \
  --symlink usr/lib64 /lib64 --symlink usr/sbin /sbin --proc /proc --dev /dev \
  --tmpfs /tmp --bind $1 $1 --chdir $1 --setenv PATH /usr/bin:/bin --"
}
