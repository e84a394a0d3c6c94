# Shared harness of the e2e scripts that source it: a temporary folder, pass/fail counters and
# `expect CODE DESCRIPTION -- CMD...`, which runs CMD with stdout in $TMP/out and stderr in
# $TMP/err and checks the exit code; for code 2 also that stderr has exactly one "error:" line
# (the contract for bad input). `finish NAME` prints the counts and sets the exit status.
# (cli.sh, data.sh, train.sh and lora.sh keep their own older copies, which differ in how strictly
# they read stderr.)
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
  fi
  ok
}
finish() {
  echo "$1: $passes passed, $fails failed"
  [ "$fails" = 0 ]
}
