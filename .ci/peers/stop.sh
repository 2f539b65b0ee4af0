#!/usr/bin/env bash
# Stop the interop peers started by .ci/peers/start.sh.
#
#   .ci/peers/stop.sh [--clean] [postfix] [aiosmtpd]    (default: both)
#
# Each peer is stopped through its pid file: SIGTERM, a wait, SIGKILL after
# 15 s.  Postfix's master daemon takes its children down with it.  When a
# process was signalled, the script then waits until the peer's ports (read
# from its peer.json) are closed, so that a new start can bind them at once.
# Nothing running is not an error.  --clean also removes the peer's runtime
# directory.  Uses MAILCLIENT_PEERS_RUN like start.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RUN="$(realpath -m "${MAILCLIENT_PEERS_RUN:-$REPO/run/peers}")"
HOST=127.0.0.1

note() { printf '[peers %s] %s\n' "$1" "$2" >&2; }

# not a zombie: see start.sh
alive() {
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

listening() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# The ports in peer.json, one per line (none when it is missing or broken).
ports_of() {
  [[ -s "$1" ]] || return 0
  grep -o '"\(smtp\|submission\|smtps\|lmtp\)": *[0-9]*' "$1" | grep -o '[0-9]*$' || true
}

stop_peer() {
  local peer="$1" clean="$2" d pidfile pid i port
  d="$RUN/$peer"
  pidfile="$d/$peer.pid"
  if [[ -s "$pidfile" ]]; then
    pid="$(tr -dc 0-9 <"$pidfile")"
    if [[ -n "$pid" ]] && alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < 300; i++)); do alive "$pid" || break; sleep 0.05; done
      if alive "$pid"; then
        note "$peer" "pid $pid still alive after SIGTERM; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        # Postfix's children die with a killed master only once they notice.
      fi
      # Only wait for the ports when we stopped something: otherwise they
      # may belong to some other server and would never close.
      for port in $(ports_of "$d/peer.json"); do
        for ((i = 0; i < 100; i++)); do listening "$port" || break; sleep 0.05; done
      done
      note "$peer" "stopped (pid $pid)"
    else
      note "$peer" "not running (stale pid file)"
    fi
    rm -f "$pidfile"
  else
    note "$peer" "not running"
  fi
  if [[ "$clean" == 1 ]]; then rm -rf "$d"; fi
}

clean=0
peers=()
for arg in "$@"; do
  case "$arg" in
    --clean) clean=1 ;;
    postfix | aiosmtpd) peers+=("$arg") ;;
    *) echo "usage: $0 [--clean] [postfix] [aiosmtpd]" >&2; exit 2 ;;
  esac
done
[[ ${#peers[@]} -gt 0 ]] || peers=(postfix aiosmtpd)
for peer in "${peers[@]}"; do stop_peer "$peer" "$clean"; done
