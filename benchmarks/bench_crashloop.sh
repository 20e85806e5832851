#!/bin/bash
# The supervisor's CPU in a crash loop: 50 servicedir sessions whose `run`
# exits 1 at once, under `wirepool run` of the checkout given (its .venv),
# over a window of SECONDS after 2 s of start-up; utime + stime from
# /proc/PID/stat.  A/B: run it for two checkouts one after the other.
#   benchmarks/bench_crashloop.sh CHECKOUT [SECONDS]
set -eu
WT=$(cd "$1" && pwd); SECS=${2:-20}
D=$(mktemp -d "${TMPDIR:-/tmp}/wirepool-crashloop.XXXXXX")
trap 'rm -rf "$D"' EXIT
mkdir "$D/root"; : > "$D/spawns"
for i in $(seq -w 0 49); do
  mkdir "$D/root/c$i"
  printf '#!/bin/bash\nprintf x >> %s/spawns\nexit 1\n' "$D" > "$D/root/c$i/run"
  chmod +x "$D/root/c$i/run"
done
"$WT/.venv/bin/wirepool" -q run servicedir "$D/root" --on-exit stop --state-dir "$D/state" &
PID=$!
sleep 2
read -r -a st < "/proc/$PID/stat"; c0=$((st[13] + st[14])); s0=$(stat -c %s "$D/spawns"); t0=$(date +%s.%N)
sleep "$SECS"
read -r -a st < "/proc/$PID/stat"; c1=$((st[13] + st[14])); s1=$(stat -c %s "$D/spawns"); t1=$(date +%s.%N)
kill -TERM "$PID"; wait "$PID" || true
python3 -c "import os; t = $t1 - $t0; print(f'cpu {100 * ($c1 - $c0) / os.sysconf(\"SC_CLK_TCK\") / t:.2f} % of a core, {($s1 - $s0) / t:.2f} spawns/s over {t:.0f} s')"
