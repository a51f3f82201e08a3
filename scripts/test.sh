#!/usr/bin/env bash
# Runs test tiers, the e2e tier once per engine: scripts/test.sh [unit] [netns] [e2e]
#   ENGINE=all (default) | 20 | 28   engines for the e2e tier (20: system Docker 20.10; 28: Docker 28
#                                    from Debian unstable, side by side, scripts/engine.sh)
#   PYTEST_ARGS                      passed to every pytest run (e.g. -x, -k compose)
# Each tier/engine is its own pytest session (own test tag and leak check); all of them run even
# when one fails, and the exit status says whether any failed. The time of each is printed.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=(.venv/bin/python -m pytest -ra)
read -r -a extra <<<"${PYTEST_ARGS:-}"
case "${ENGINE:-all}" in
  all) engines=(20 28) ;;
  20|28) engines=("$ENGINE") ;;
  *) echo "ENGINE must be all, 20 or 28 (got '$ENGINE')" >&2; exit 2 ;;
esac
tiers=("$@")
[ ${#tiers[@]} -gt 0 ] || tiers=(unit netns e2e)

failed=()
summary=()
run() {  # run LABEL CMD...: one pytest session; "no tests collected" (a -k that selects none) is no failure
  local label=$1 t0 rc
  shift
  t0=$(date +%s)
  echo "=== $label: $*"
  "$@"
  rc=$?
  [ $rc -eq 5 ] && [ ${#extra[@]} -gt 0 ] && rc=0
  summary+=("$label: $(( $(date +%s) - t0 )) s, exit $rc")
  [ $rc -eq 0 ] || failed+=("$label")
}

lower=()
for t in "${tiers[@]}"; do
  case "$t" in
    unit|netns) lower+=("tests/$t") ;;
    e2e) ;;
    *) echo "unknown tier '$t' (unit, netns, e2e)" >&2; exit 2 ;;
  esac
done
# unit and netns do not depend on the engine: once, in one session
[ ${#lower[@]} -gt 0 ] && run "${lower[*]}" "${PYTEST[@]}" "${lower[@]}" "${extra[@]}"

# e2e modules that never use the engine under test (the swarm bed runs Docker 28 nodes of its own):
# with both engines, only the first session runs them.
independent=(tests/e2e/test_swarm.py)
if [[ " ${tiers[*]} " == *" e2e "* ]]; then
  skip=()
  for e in "${engines[@]}"; do
    if [ "$e" = 28 ]; then
      # Fails loudly (not a skip) when Debian unstable's Docker cannot be fetched or started.
      # start refuses when it already runs with extra flags (a session killed before it could put
      # them back): then a restart puts it back to normal.
      if ! { bash scripts/engine.sh fetch 28 && { bash scripts/engine.sh start 28 || bash scripts/engine.sh restart 28; }; }; then
        summary+=("e2e on Docker 28: engine could not be fetched or started")
        failed+=("e2e on Docker 28")
        continue
      fi
    else
      bash scripts/dockerd.sh
    fi
    # tests/engine.py reads PYNET_ENGINE: DOCKER_HOST, and for 28 the engine's network namespace
    [ ${#skip[@]} -gt 0 ] && echo "=== (${independent[*]}: engine-independent, ran in the first session)"
    run "e2e on Docker $e" env PYNET_ENGINE="$e" "${PYTEST[@]}" tests/e2e "${skip[@]}" "${extra[@]}"
    for m in "${independent[@]}"; do skip+=(--ignore "$m"); done
  done
fi

echo "=== summary"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
