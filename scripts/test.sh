#!/usr/bin/env bash
# Install what the tests need on a fresh Debian/Ubuntu machine, then lint, type-check and run the whole test suite.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || apt_packages+=(mosquitto)
command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium)  # dashboard browser tests (Playwright)
# CJK glyphs for the Chinese pages in the browser tests' screenshots
command -v fc-list >/dev/null 2>&1 && fc-list :lang=zh | grep -q . || apt_packages+=(fonts-wqy-microhei)
if [ ${#apt_packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing from Debian's packages: ${apt_packages[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
# Settings for both in pyproject.toml.
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
