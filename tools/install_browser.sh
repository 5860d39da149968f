#!/usr/bin/env bash
# Install Debian's headless browser for tests/test_browser.py: chromium and chromium-driver.
# Idempotent: does nothing when both are already there. Needs root (CI runs as root) and
# Debian's mirrors; elsewhere it says what to run and exits 1 (the browser tests then skip).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    echo "install_browser: chromium and chromedriver present ($(command -v chromium), $(command -v chromedriver))"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_browser: chromium/chromedriver missing and not root; run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium chromium-driver" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "install_browser: no apt-get here (not Debian?); install chromium and chromedriver by hand" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium chromium-driver
command -v chromium >/dev/null && command -v chromedriver >/dev/null
echo "install_browser: installed $(chromium --version 2>/dev/null | tail -1)"
