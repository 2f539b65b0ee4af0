#!/usr/bin/env bash
# Install what the benchmark needs; safe to run again (it only installs what
# is missing).
#
#   bash benchmarks/setup.sh [VENV]        # VENV defaults to .venv at the repo root
#
# * Debian packages: postfix (only for /usr/sbin/smtp-sink and smtp-source;
#   installed as "No configuration", its daemon is never started by this
#   script), time (GNU time, peak RSS), util-linux (taskset).
# * Python: aiosmtplib (a peer client) into VENV.  Twisted and mailclient
#   itself come from the project's own install (pip install -e .).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="${1:-${BENCH_VENV:-$ROOT/.venv}}"
AIOSMTPLIB_VERSION="${AIOSMTPLIB_VERSION:-5.1.3}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
{ [ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ]; } || need+=(postfix)
[ -x /usr/bin/time ] || need+=(time)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)

if [ "${#need[@]}" -gt 0 ]; then
  echo "setup.sh: installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  echo "postfix postfix/mailname string bench.invalid" | $SUDO debconf-set-selections
  # Keep the package scripts from starting a mail daemon.
  policy_created=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    policy_created=1
  fi
  if ! $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"; then
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
  fi
  if [ -n "$policy_created" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup.sh: no Python venv at $VENV (create it and pip install -e . first)" >&2
  exit 1
fi
if ! "$VENV/bin/python" -c "import twisted" 2>/dev/null; then
  echo "setup.sh: installing twisted into $VENV"
  "$VENV/bin/python" -m pip install -q twisted
fi
if ! "$VENV/bin/python" -c "import aiosmtplib" 2>/dev/null; then
  echo "setup.sh: installing aiosmtplib==$AIOSMTPLIB_VERSION into $VENV"
  "$VENV/bin/python" -m pip install -q "aiosmtplib==$AIOSMTPLIB_VERSION"
fi

echo "setup.sh: ok"
echo "  smtp-sink/smtp-source: $(ls /usr/sbin/smtp-sink /usr/sbin/smtp-source | tr '\n' ' ')"
echo "  python: $VENV/bin/python ($("$VENV/bin/python" -c 'import twisted, aiosmtplib; print("twisted", twisted.__version__, "aiosmtplib", aiosmtplib.__version__)'))"
