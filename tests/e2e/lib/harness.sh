# Shared harness of the e2e scripts that source it: a temporary folder, pass/fail counters and
# `expect CODE DESCRIPTION -- CMD...`, which runs CMD with stdout in $TMP/out and stderr in
# $TMP/err and checks the exit code; for code 2 also that stderr has exactly one "error:" line
# (the contract for bad input). With STRICT_STDERR=1 set before sourcing, stderr must also start
# with that line and hold nothing else but CLI11's "(run with --help ...)" hint (commands that
# print progress before failing cannot use it). `finish NAME` prints the counts and sets the exit
# status.
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
passes=0
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect() {
  local want=$1 desc=$2
  shift 3
  "$@" >"$TMP/out" 2>"$TMP/err"
  local got=$?
  if [ "$got" != "$want" ]; then
    bad "$desc: exit $got, want $want; stderr: $(tail -c 400 "$TMP/err")"
    return
  fi
  if [ "$want" = 2 ]; then
    local lines
    lines=$(grep -c '^error: ' "$TMP/err")
    [ "$lines" = 1 ] || { bad "$desc: $lines error lines: $(head -c 300 "$TMP/err")"; return; }
    if [ "${STRICT_STDERR:-0}" = 1 ]; then
      if ! head -1 "$TMP/err" | grep -q '^error: '; then
        bad "$desc: stderr does not start with 'error:': $(head -c 300 "$TMP/err")"
        return
      fi
      lines=$(grep -vc '^(run with --help' "$TMP/err")
      [ "$lines" = 1 ] || { bad "$desc: $lines stderr lines: $(cat "$TMP/err")"; return; }
    fi
  fi
  ok
}
finish() {
  echo "$1: $passes passed, $fails failed"
  [ "$fails" = 0 ]
}
