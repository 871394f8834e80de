#!/usr/bin/env bash
# Chromium and its WebDriver from Debian's packages, for the browser tests (make test-browser).
#   tests/browser/browser.sh install   install chromium and chromium-driver if missing (root only);
#                                      prints the two paths
# Exit status 77 when they are missing and cannot be installed here (not root): the tests skip, saying why.
set -euo pipefail

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "the browser tests need chromium and chromium-driver (Debian's packages): install them, or run as root" >&2
    exit 77
  fi
  echo "installing chromium and chromium-driver from Debian's packages" >&2
  # a fresh machine may hold no package lists yet: fetch them once if the first try fails
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; }
fi
command -v chromium
command -v chromedriver
