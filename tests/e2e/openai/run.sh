#!/usr/bin/env bash
# End-to-end tests of `brisk serve` with the official OpenAI Node client, run by ctest:
#   run.sh setup WORK               npm ci into WORK (once per lock-file change): the fixture
#   run.sh test WORK BRISK TESTDATA node --test serve.test.js against a fresh server
# Exits 77 (ctest: skipped) with a one-line reason when node / npm are missing or the npm
# registry cannot be reached, so the rest of the suite runs on machines without Node.js.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
MODE=${1:?usage: run.sh setup WORK | run.sh test WORK BRISK TESTDATA}
WORK=${2:?work directory}

need_node() {
  if ! command -v node >/dev/null 2>&1; then
    echo "SKIP: node not found; install Node.js >= 18 (and npm) to run the OpenAI client e2e tests"
    exit 77
  fi
}

case "$MODE" in
  setup)
    need_node
    if ! command -v npm >/dev/null 2>&1; then
      echo "SKIP: npm not found; install npm to run the OpenAI client e2e tests"
      exit 77
    fi
    mkdir -p "$WORK"
    if [ -d "$WORK/node_modules/openai" ] && cmp -s "$HERE/package-lock.json" "$WORK/.installed-lock"; then
      echo "openai client already installed in $WORK"
      exit 0
    fi
    cp "$HERE/package.json" "$HERE/package-lock.json" "$WORK/"
    if ! (cd "$WORK" && npm ci --no-audit --no-fund --loglevel=error); then
      echo "SKIP: 'npm ci' failed (is the npm registry reachable?)"
      exit 77
    fi
    cp "$HERE/package-lock.json" "$WORK/.installed-lock"
    ;;
  test)
    BRISK=${3:?brisk binary}
    need_node
    if [ ! -d "$WORK/node_modules/openai" ]; then
      echo "SKIP: the openai client is not installed in $WORK (the e2e.openai_setup step was skipped)"
      exit 77
    fi
    SCRATCH=$(mktemp -d)
    trap 'rm -rf "$SCRATCH"' EXIT
    # CommonJS require() falls back to NODE_PATH, so the test file stays in the source tree.
    NODE_PATH="$WORK/node_modules" BRISK="$BRISK" BRISK_TESTDATA="${BRISK_TESTDATA:-${4:?testdata}}" \
      BRISK_E2E_DIR="$SCRATCH" node --test --test-reporter=spec "$HERE/serve.test.js"
    ;;
  *)
    echo "usage: run.sh setup WORK | run.sh test WORK BRISK TESTDATA" >&2
    exit 2
    ;;
esac
