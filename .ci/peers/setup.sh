#!/usr/bin/env bash
# Install what the interop peers need: Postfix with Cyrus SASL, and openssl for
# the test PKI.  Debian 12, as root.  Idempotent: when everything is present it
# touches nothing and returns in a fraction of a second.
#
#   .ci/peers/setup.sh           install whatever is missing
#   .ci/peers/setup.sh --check   exit 0 when complete, 1 (with a list) otherwise; no root needed
#
# Environment:
#   MAILCLIENT_PEERS_FORCE_SETUP=1   run apt-get update + install even when complete
#   MAILCLIENT_PEERS_APT_UPDATE=0    skip "apt-get update" (the lists are known fresh)
#
# aiosmtpd is NOT installed here: it is part of the project's "test" extra and
# runs from the project venv (.ci/test installs it with pip).
#
# Care taken so that installing Postfix never turns this machine into an MTA:
#   * debconf is preseeded with "No configuration": no /etc/postfix/main.cf,
#     nothing listens on port 25;
#   * while apt runs, a policy-rc.d that answers 101 forbids service starts
#     (only when the machine has none of its own; removed again on exit);
#   * --no-install-recommends keeps the footprint small, --no-upgrade keeps
#     apt from upgrading a package that is already there.
set -euo pipefail

# libsasl2-modules has every mechanism the Postfix peer offers, SCRAM-SHA-1
# and SCRAM-SHA-256 included (libscram.so; check with saslpluginviewer).
PACKAGES=(postfix sasl2-bin libsasl2-modules openssl ca-certificates)
# Commands and files the start script relies on.
NEEDED_FILES=(/usr/sbin/postfix /usr/lib/postfix/sbin/master /usr/sbin/saslpasswd2 /usr/bin/openssl)

T0=$(date +%s%N)
say() { printf '[peers setup] %s\n' "$*" >&2; }
took() { printf '%d.%02ds' $(( ($(date +%s%N) - T0) / 1000000000 )) $(( ($(date +%s%N) - T0) / 10000000 % 100 )); }

is_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# Prints one line per missing piece; prints nothing when everything is there.
missing() {
  local p f
  for p in "${PACKAGES[@]}"; do is_installed "$p" || echo "package $p"; done
  # Debian's python3 has no ensurepip without python3-venv, and .ci/test needs
  # to create the project venv with it.
  if command -v python3 >/dev/null && ! python3 -c 'import ensurepip' 2>/dev/null; then
    is_installed python3-venv || echo "package python3-venv"
  fi
  for f in "${NEEDED_FILES[@]}"; do [[ -e "$f" ]] || echo "file $f"; done
}

versions() {
  local p
  for p in postfix libsasl2-modules openssl; do
    printf '%s=%s ' "$p" "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo '?')"
  done
}

case "${1:-}" in
  --check)
    todo="$(missing)"
    if [[ -z "$todo" ]]; then echo "peers: complete ($(versions))"; exit 0; fi
    echo "peers: incomplete:"; sed 's/^/  /' <<<"$todo"; exit 1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

todo="$(missing)"
if [[ -z "$todo" && "${MAILCLIENT_PEERS_FORCE_SETUP:-0}" != 1 ]]; then
  say "nothing to do ($(versions)) in $(took)"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || { say "must run as root to install: $(tr '\n' ',' <<<"$todo")"; exit 1; }

install_list=()
apt_flags=(--no-upgrade)
while read -r kind name; do
  if [[ "$kind" == package ]]; then install_list+=("$name"); fi
done <<<"$todo"
if [[ "${MAILCLIENT_PEERS_FORCE_SETUP:-0}" == 1 ]]; then
  install_list+=("${PACKAGES[@]}")
elif [[ ${#install_list[@]} -eq 0 ]]; then
  # every package claims to be installed, yet one of its files is gone
  install_list+=("${PACKAGES[@]}")
  apt_flags=(--reinstall)
fi

export DEBIAN_FRONTEND=noninteractive
own_policy=0
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\n# temporary, from mailclient .ci/peers/setup.sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 0755 /usr/sbin/policy-rc.d
  own_policy=1
fi
cleanup() { if [[ $own_policy == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
if [[ "${MAILCLIENT_PEERS_APT_UPDATE:-1}" != 0 ]]; then
  say "apt-get update"
  apt-get update -qq
fi
mapfile -t install_list < <(printf '%s\n' "${install_list[@]}" | sort -u)
say "apt-get install ${install_list[*]}"
if ! apt-get install -y -qq --no-install-recommends "${apt_flags[@]}" \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${install_list[@]}" >/tmp/mailclient-peers-apt.log 2>&1; then
  tail -30 /tmp/mailclient-peers-apt.log >&2
  say "apt-get install failed (full log: /tmp/mailclient-peers-apt.log)"
  exit 1
fi

todo="$(missing)"
if [[ -n "$todo" ]]; then say "still missing after apt: $(tr '\n' ',' <<<"$todo")"; exit 1; fi
say "installed ($(versions)) in $(took)"
