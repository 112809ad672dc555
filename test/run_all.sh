#!/usr/bin/env bash
# Installs what the tests need, then runs every test: lint, Python, JavaScript, browser.
# Usage (from anywhere): bash test/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q -e '.[test,freeze]'   # freeze: PyInstaller, for igor freeze and the frozen-backend tests
# Chromium for the browser tests; Xvfb for the one that opens a real window (skipped without it).
if [ ! -x /usr/bin/chromium ] || ! command -v Xvfb >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium xvfb >/dev/null
    elif [ ! -x /usr/bin/chromium ]; then
        echo "The browser tests need Chromium at /usr/bin/chromium: sudo apt-get install chromium xvfb" >&2
        exit 1
    fi
fi
npm --prefix clients/js ci --no-audit --no-fund

python3 -m ruff check .
python3 -m pytest test -q
# The original Igor's own integration tests, unchanged (they listen on its fixed ports 5678 and 8080).
if [ -f ../shared/original-igor/run.sh ]; then
    bash ../shared/original-igor/run.sh python3
else
    echo "../shared/original-igor is not beside this checkout: the original Igor's tests were not run" >&2
fi
npm --prefix clients/js test   # builds first (pretest)
