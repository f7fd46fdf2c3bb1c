#!/usr/bin/env bash
# Installs the system programs the test suite talks to, when they are missing:
# Chromium (browser tests), redis-server, PostgreSQL server binaries (used when
# no PostgreSQL answers on 127.0.0.1:5432), openssl, and Node.js with npm
# (the Makefile installs axe-core, which the browser tests inject into pages,
# with `npm ci`). The tests start and stop their own Redis and, if needed,
# their own PostgreSQL.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
# The fonts Chromium needs to draw text in screenshots.
if ! fc-list 2>/dev/null | grep -qi "dejavu\|liberation"; then
  missing+=(fonts-dejavu-core)
fi
# Emoji (reactions, custom statuses) would be empty boxes in screenshots without it.
if ! fc-list 2>/dev/null | grep -qi "emoji"; then
  missing+=(fonts-noto-color-emoji)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "Installing system packages the tests need: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "Please install as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
