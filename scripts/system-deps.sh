#!/usr/bin/env bash
# Debian packages the browser tests need; installed only when missing and when we may.
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] apt-get install ${need[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}") >/tmp/ebm-apt.log 2>&1 \
    || echo "[setup] apt-get failed (see /tmp/ebm-apt.log); browser tests will be skipped"
else
  echo "[setup] ${need[*]} missing and not root: browser tests will be skipped (sudo apt-get install ${need[*]})"
fi
exit 0
