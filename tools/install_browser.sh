#!/bin/sh
# Install headless Chromium and its WebDriver for the attention viewer's browser test
# (tests/viz/test_viewer_browser.py), when they are missing. Debian/Ubuntu packages; needs root.
# The Python side (selenium) comes with the project's test extra.
set -eu
if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
    echo "install_browser: chromium and chromedriver already present"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: no apt-get here; install Chromium and chromedriver by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver
chromium --version && chromedriver --version
