#!/usr/bin/env bash
# Start the interop peers on loopback and print one JSON line per peer.
#
#   .ci/peers/start.sh                    # both: postfix and aiosmtpd
#   .ci/peers/start.sh postfix            # only the ones named
#
# Each peer gets three SMTP listeners on 127.0.0.1:
#
#   smtp        STARTTLS offered; AUTH offered (also in clear); mail without AUTH accepted
#   submission  STARTTLS required (530 for MAIL before it); AUTH only after TLS, required
#   smtps       implicit TLS; AUTH required
#
# and the aiosmtpd peer also an LMTP listener (RFC 2033): in clear, no
# STARTTLS, no AUTH, LHLO (HELO/EHLO get 500), one reply per accepted
# recipient after the data.  Its deliveries go to the aiosmtpd Maildir.
#
# Default ports (BASE+25 / BASE+587 / BASE+465, LMTP BASE+24):
#   postfix  11025 11587 11465         MAILCLIENT_POSTFIX_PORT_BASE  (default 11000)
#   aiosmtpd 14025 14587 14465, 14024  MAILCLIENT_AIOSMTPD_PORT_BASE (default 14000)
#
# What the EHLO/LHLO replies offer (the contract checked by
# tests/interop/test_peers_offer.py):
#   postfix   PIPELINING SIZE 1048576 8BITMIME SMTPUTF8 DSN ENHANCEDSTATUSCODES
#             CHUNKING (also VRFY ETRN), STARTTLS where not yet in TLS, and
#             AUTH PLAIN LOGIN CRAM-MD5 DIGEST-MD5 SCRAM-SHA-1 SCRAM-SHA-256
#             (not before STARTTLS on submission)
#   aiosmtpd  SIZE 1048576 8BITMIME SMTPUTF8, STARTTLS, AUTH PLAIN LOGIN
#             CRAM-MD5; no PIPELINING keyword, no CHUNKING/BDAT, no DSN
#   lmtp      PIPELINING ENHANCEDSTATUSCODES SIZE 1048576 8BITMIME SMTPUTF8
#
# Other settings (environment):
#   MAILCLIENT_PEERS_RUN     runtime directory        [<repo>/run/peers]
#   MAILCLIENT_PEERS_PYTHON  interpreter with aiosmtpd [<repo>/.venv/bin/python]
#   MAILCLIENT_PEERS_TIMEOUT seconds to wait for the greetings [30]
#
# Credentials testuser/testpass, SIZE limit 1048576, one test CA for both
# peers ($RUN/pki/ca.crt; the server certificate is valid for localhost and
# 127.0.0.1).  Triggers, by the local part of the address:
#   RCPT reject@ 550 5.1.1   RCPT tempfail@ 450 4.2.1
#   MAIL reject@ 550 5.7.1   MAIL tempfail@ 451 4.3.0
#   MAIL eod-reject@ 554 5.7.1 / eod-tempfail@ 451 4.7.1 after the data
#     (LMTP: that reply once per recipient)
#   postfix only: RCPT bounce@ is accepted, then its delivery fails (5.1.1)
#     and Postfix mails a failure DSN to the sender
#   LMTP only: RCPT lmtp-reject@ / lmtp-tempfail@ are accepted (250), and
#     after the data that recipient gets 550 5.1.1 / 452 4.2.2
#
# Every other address is accepted and delivered into the peer's one Maildir:
# any domain, UTF-8 local parts and IDN domains in U-label or A-label form
# (bücher.example, xn--bcher-kva.example) with MAIL FROM ... SMTPUTF8.
# Postfix mails DSNs (NOTIFY=SUCCESS, and failures) from MAILER-DAEMON to the
# sender, which lands in the same Maildir: Content-Type multipart/report;
# report-type=delivery-status, "Original-Envelope-Id: <ENVID>" when given.
#
# The JSON line is also saved as $RUN/<peer>/peer.json (the aiosmtpd one has
# "ports": {..., "lmtp": 14024}).  A peer that is
# already running is left alone (its saved JSON is printed again).  Starting a peer
# wipes its directory (Maildir included); the PKI is kept.  Postfix needs
# root; it runs as a private instance with its own config, queue and Maildir,
# never as the system MTA and never on port 25.
set -euo pipefail
umask 022

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RUN="$(realpath -m "${MAILCLIENT_PEERS_RUN:-$REPO/run/peers}")"   # postfix -c wants absolute paths
HOST=127.0.0.1
TLS_NAME=localhost
PEER_USER=testuser
PEER_PASS=testpass
SASL_REALM=peers.test
SIZE_LIMIT=1048576
TIMEOUT="${MAILCLIENT_PEERS_TIMEOUT:-30}"
PKI="$RUN/pki"

# The interpreter for the helpers below and for the aiosmtpd server.
PY="${MAILCLIENT_PEERS_PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PY="$REPO/.venv/bin/python"; else PY=python3; fi
fi

note() { printf '[peers %s] %s\n' "${PEER:-}" "$*" >&2; }
die() { note "ERROR: $*"; exit 1; }

# alive PID: the process exists and is not a zombie.  Daemons end up as
# children of PID 1, and a container's init may reap them late, so `kill -0`
# alone would call a dead daemon alive.
alive() {
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

pidfile_alive() { [[ -s "$1" ]] && alive "$(tr -dc 0-9 <"$1")"; }

listening() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

ports_for() {   # ports_for DEFAULT_BASE ENV_NAME
  local base="${!2:-$1}"
  [[ "$base" =~ ^[0-9]+$ ]] || die "$2 must be a number"
  SMTP_PORT=$((base + 25)) SUBMISSION_PORT=$((base + 587)) SMTPS_PORT=$((base + 465))
  LMTP_PORT=$((base + 24))
}

refuse_busy_ports() {
  local port
  for port in "$@"; do
    if listening "$port"; then die "$HOST:$port is already in use (another instance? .ci/peers/stop.sh)"; fi
  done
}

# A CA and a server certificate that strict verifiers (X509_STRICT,
# service_identity) accept: CA with keyCertSign and SKI, leaf with SANs for
# every name a client may use, AKI/SKI, serverAuth.  Made once, reused while
# valid for another day; flock makes parallel starts safe.
make_pki() {
  mkdir -p "$PKI"
  (
    flock 8
    if [[ -s "$PKI/server.crt" && -s "$PKI/ca.crt" ]] \
       && openssl x509 -checkend 86400 -noout -in "$PKI/server.crt" >/dev/null 2>&1; then
      exit 0
    fi
    cd "$PKI"
    cat >ca.conf <<'EOF'
[req]
prompt = no
distinguished_name = name
x509_extensions = ca_ext
[name]
O = mailclient interop tests
CN = mailclient test CA
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    cat >server.ext <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 \
      -config ca.conf -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -new -newkey rsa:2048 -nodes -sha256 \
      -subj "/O=mailclient interop tests/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    openssl x509 -req -sha256 -days 825 -in server.csr -CA ca.crt -CAkey ca.key \
      -CAcreateserial -extfile server.ext -out server.crt 2>/dev/null
    cat server.crt ca.crt >server-chain.crt    # servers send the chain
    chmod 600 ca.key server.key
    rm -f server.csr
  ) 8>"$PKI/.lock"
}

# wait_for_greetings PID PORT[/tls]... : every listener answers 220 (after a
# verified TLS handshake on /tls ports, which also proves the PKI works);
# give up when PID dies or after $TIMEOUT seconds.
wait_for_greetings() {
  "$PY" - "$HOST" "$TLS_NAME" "$PKI/ca.crt" "$TIMEOUT" "$@" <<'EOF'
import socket, ssl, sys, time
host, name, ca, timeout, pid, *ports = sys.argv[1:]
deadline = time.monotonic() + float(timeout)

def alive():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False

def greeting(port, tls):
    with socket.create_connection((host, port), timeout=2) as sock:
        if tls:
            ctx = ssl.create_default_context(cafile=ca)
            ctx.verify_flags |= ssl.VERIFY_X509_STRICT
            sock = ctx.wrap_socket(sock, server_hostname=name)
        line = sock.makefile("rb").readline()
        sock.sendall(b"QUIT\r\n")
        return line

for spec in ports:
    port, _, tls = spec.partition("/")
    while True:
        try:
            line = greeting(int(port), tls == "tls")
            if line.startswith(b"220"):
                break
            error = f"unexpected greeting {line!r}"
        except ssl.SSLError as e:
            sys.exit(f"TLS handshake with {host}:{port} failed: {e}")
        except OSError as e:
            error = str(e)
        if not alive():
            sys.exit(f"the server (pid {pid}) exited before {host}:{port} answered")
        if time.monotonic() > deadline:
            sys.exit(f"no greeting from {host}:{port} within {timeout}s: {error}")
        time.sleep(0.05)
EOF
}

# describe KEY=VALUE... KEY:=JSON... : one JSON object on one line.  Dots in
# a key nest objects.
describe() {
  "$PY" - "$@" <<'EOF'
import json, sys
out = {}
for item in sys.argv[1:]:
    key, _, value = item.partition("=")
    if key.endswith(":"):
        key, value = key[:-1], json.loads(value)
    *parents, leaf = key.split(".")
    node = out
    for parent in parents:
        node = node.setdefault(parent, {})
    node[leaf] = value
print(json.dumps(out))
EOF
}

common_fields() {   # common_fields PEER DIR
  printf '%s\n' "peer=$1" "host=$HOST" "ports.smtp:=$SMTP_PORT" \
    "ports.submission:=$SUBMISSION_PORT" "ports.smtps:=$SMTPS_PORT" \
    "ca_cert=$PKI/ca.crt" "tls_server_name=$TLS_NAME" \
    "username=$PEER_USER" "password=$PEER_PASS" "size_limit:=$SIZE_LIMIT" \
    "maildir=$2/maildir" "run_dir=$2"
}

# saved_json DIR: print the peer.json a running peer was started with (it
# describes that process, whatever the environment says now).
saved_json() { [[ -s "$1/peer.json" ]] && cat "$1/peer.json"; }

# ---------------------------------------------------------------- postfix ----

postfix_main_cf() {   # postfix_main_cf DIR
  local d="$1"
  cat <<EOF
# Generated by .ci/peers/start.sh: a private Postfix for mailclient's tests.
compatibility_level = 3.6
queue_directory = $d/spool
data_directory = $d/data
mail_owner = postfix
setgid_group = postdrop
myhostname = localhost
mydomain = $SASL_REALM
myorigin = \$myhostname
smtpd_banner = \$myhostname ESMTP Postfix (mailclient test peer)
biff = no

# Loopback only, IPv4 only; the listeners are in master.cf.
inet_interfaces = $HOST
inet_protocols = ipv4
mynetworks = 127.0.0.0/8

# Nothing leaves this machine and nothing is delivered locally: every domain
# is a virtual mailbox domain and every recipient lands in one Maildir,
# written as nobody (uids below virtual_minimum_uid are refused).
mydestination =
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:5.1.1 local delivery disabled
default_transport = error:5.1.1 outbound delivery disabled
relay_transport = error:5.1.1 relay disabled
virtual_mailbox_domains = static:all
virtual_mailbox_base = $d
virtual_mailbox_maps = static:maildir/
virtual_uid_maps = static:$(id -u nobody)
virtual_gid_maps = static:$(getent group nogroup | cut -d: -f3)
# must not be below message_size_limit; 0 = no limit
virtual_mailbox_limit = 0
message_size_limit = $SIZE_LIMIT
smtputf8_enable = yes
enable_long_queue_ids = yes

# The EHLO reply: PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN,
# ENHANCEDSTATUSCODES and CHUNKING are Postfix's defaults; make sure none is
# discarded.  (Mail to a U-label domain needs MAIL FROM ... SMTPUTF8, else
# 501 5.1.3; the A-label form works without.)
smtpd_discard_ehlo_keywords =
smtpd_discard_ehlo_keyword_address_maps =
# The "bounce@" trigger: accepted at RCPT, then the delivery fails and the
# sender gets a failure DSN (in the Maildir, as every domain is ours).
transport_maps = regexp:$d/conf/transport_triggers
# (without this, smtpd would refuse bounce@ at RCPT already)
smtpd_reject_unlisted_recipient = no

# No syslogd in containers: log to a file through postlogd.
maillog_file = $d/log/maillog
maillog_file_prefixes = $d

# Keep the message as sent: the default (permit_inet_interfaces) matches
# 127.0.0.1 and would add Message-ID/Date/From and rewrite addresses.
local_header_rewrite_clients =

# Answer fast: no sleeping after errors, no flow control.
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtpd_junk_command_limit = 1000
in_flow_delay = 0

# TLS (the listeners in master.cf make it required or implicit)
smtpd_tls_cert_file = $PKI/server-chain.crt
smtpd_tls_key_file = $PKI/server.key
smtpd_tls_security_level = may
smtpd_tls_received_header = no
smtpd_tls_loglevel = 1

# Cyrus SASL with a sasldb holding cleartext passwords (so CRAM-MD5,
# DIGEST-MD5 and SCRAM work too); no saslauthd needed.
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $d/conf/sasl
smtpd_sasl_local_domain = $SASL_REALM
smtpd_sasl_security_options = noanonymous
# AUTH in clear on the smtp port (submission overrides this)
smtpd_tls_auth_only = no

# Test triggers.  smtpd_delay_reject=no answers sender triggers at MAIL
# (by default every reject waits until RCPT).
smtpd_delay_reject = no
smtpd_sender_restrictions = check_sender_access regexp:$d/conf/sender_triggers
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access regexp:$d/conf/recipient_triggers
smtpd_end_of_data_restrictions = check_sender_access regexp:$d/conf/end_of_data_triggers
authenticated_only = check_recipient_access regexp:$d/conf/recipient_triggers, permit_sasl_authenticated, reject
EOF
}

# Our own master.cf: only the services this instance uses, none chrooted (a
# chroot would need copies of /etc/services, the SASL config and the sasldb in
# the queue directory), no port-25 listener.
postfix_master_cf() {
  cat <<EOF
# service   type  private unpriv chroot wakeup maxproc command
$HOST:$SMTP_PORT inet n - n - - smtpd
$HOST:$SUBMISSION_PORT inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=\$authenticated_only
$HOST:$SMTPS_PORT inet n - n - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=\$authenticated_only
pickup     unix  n - n 60 1 pickup
cleanup    unix  n - n -  0 cleanup
qmgr       unix  n - n 300 1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -  - trivial-rewrite
bounce     unix  - - n -  0 bounce
defer      unix  - - n -  0 bounce
trace      unix  - - n -  0 bounce
verify     unix  - - n -  1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -  - proxymap
proxywrite unix  - - n -  1 proxymap
showq      unix  n - n -  - showq
error      unix  - - n -  - error
retry      unix  - - n -  - error
discard    unix  - - n -  - discard
virtual    unix  - n n -  - virtual
anvil      unix  - - n -  1 anvil
scache     unix  - - n -  1 scache
postlog    unix-dgram n - n - 1 postlogd
EOF
}

start_postfix() {
  PEER=postfix
  local d="$RUN/postfix" conf pidfile
  conf="$d/conf" pidfile="$d/postfix.pid"
  ports_for 11000 MAILCLIENT_POSTFIX_PORT_BASE
  postfix_json() {
    local fields
    mapfile -t fields < <(common_fields postfix "$d")
    describe "${fields[@]}" \
      'auth_mechanisms:=["PLAIN","LOGIN","CRAM-MD5","DIGEST-MD5","SCRAM-SHA-1","SCRAM-SHA-256"]' \
      "pid_file=$pidfile" "log=$d/log/maillog" "config_dir=$conf" >"$d/peer.json"
    cat "$d/peer.json"
  }
  if pidfile_alive "$pidfile"; then note "already running"; saved_json "$d" || postfix_json; return 0; fi
  [[ $(id -u) -eq 0 ]] || die "postfix needs root (it switches to its own users)"
  [[ -x /usr/sbin/postfix ]] || die "postfix is not installed: run .ci/peers/setup.sh"
  command -v saslpasswd2 >/dev/null || die "saslpasswd2 is missing: run .ci/peers/setup.sh"
  refuse_busy_ports "$SMTP_PORT" "$SUBMISSION_PORT" "$SMTPS_PORT"
  make_pki

  rm -rf "$d"
  mkdir -p "$conf/sasl" "$d/log" "$d/spool" "$d/data"
  # The queue directory belongs to root (postfix check makes its
  # subdirectories); the data directory to postfix; the Maildir to nobody.
  chown root:root "$d/spool"
  chown postfix:postfix "$d/data"
  install -d -o nobody -g nogroup -m 0755 "$d/maildir" "$d/maildir/tmp" "$d/maildir/new" "$d/maildir/cur"
  if command -v runuser >/dev/null; then
    runuser -u postfix -- test -x "$d/spool" && runuser -u nobody -- test -w "$d/maildir/tmp" \
      || die "users postfix/nobody cannot reach $d (a parent directory is not world-searchable);" \
             "set MAILCLIENT_PEERS_RUN to a directory under /tmp"
  fi

  postfix_main_cf "$d" >"$conf/main.cf"
  postfix_master_cf >"$conf/master.cf"
  printf '%s\n' \
    '/^reject@/    550 5.7.1 Sender rejected (test trigger)' \
    '/^tempfail@/  451 4.3.0 Sender temporarily rejected (test trigger)' >"$conf/sender_triggers"
  printf '%s\n' \
    '/^reject@/    550 5.1.1 Recipient rejected (test trigger)' \
    '/^tempfail@/  450 4.2.1 Recipient temporarily unavailable (test trigger)' >"$conf/recipient_triggers"
  printf '%s\n' \
    '/^bounce@/  error:5.1.1 Mailbox unavailable (test trigger, after queueing)' >"$conf/transport_triggers"
  printf '%s\n' \
    '/^eod-reject@/    554 5.7.1 Message rejected after data (test trigger)' \
    '/^eod-tempfail@/  451 4.7.1 Message deferred after data (test trigger)' >"$conf/end_of_data_triggers"
  printf '%s\n' 'pwcheck_method: auxprop' 'auxprop_plugin: sasldb' "sasldb_path: $conf/sasldb2" \
    'mech_list: PLAIN LOGIN CRAM-MD5 DIGEST-MD5 SCRAM-SHA-1 SCRAM-SHA-256' >"$conf/sasl/smtpd.conf"
  printf '%s' "$PEER_PASS" | saslpasswd2 -f "$conf/sasldb2" -c -p -u "$SASL_REALM" "$PEER_USER"
  chown root:postfix "$conf/sasldb2"
  chmod 0640 "$conf/sasldb2"
  # Postfix keeps re-reading a table whose mtime is less than ~1 s old (it
  # might be half written), which adds seconds to every start: backdate them.
  touch -d '1 minute ago' "$conf"/* "$conf"/sasl/*

  # The postfix command reports errors in the mail log, not on stderr.
  failed() { cat "$d/log/start.log" >&2 2>/dev/null || true; tail -n 20 "$d/log/maillog" >&2 2>/dev/null || true; die "$1"; }
  /usr/sbin/postfix -c "$conf" check >"$d/log/start.log" 2>&1 || failed "postfix check failed"
  /usr/sbin/postfix -c "$conf" start >>"$d/log/start.log" 2>&1 || failed "postfix start failed"
  local i
  for ((i = 0; i < 100; i++)); do [[ -s "$d/spool/pid/master.pid" ]] && break; sleep 0.05; done
  [[ -s "$d/spool/pid/master.pid" ]] || failed "the master daemon wrote no pid file"
  tr -dc 0-9 <"$d/spool/pid/master.pid" >"$pidfile"
  wait_for_greetings "$(cat "$pidfile")" "$SMTP_PORT" "$SUBMISSION_PORT" "$SMTPS_PORT/tls" \
    || failed "postfix did not answer"
  postfix_json
}

# --------------------------------------------------------------- aiosmtpd ----

start_aiosmtpd() {
  PEER=aiosmtpd
  local d="$RUN/aiosmtpd" pidfile
  pidfile="$d/aiosmtpd.pid"
  ports_for 14000 MAILCLIENT_AIOSMTPD_PORT_BASE
  aiosmtpd_json() {
    local fields
    mapfile -t fields < <(common_fields aiosmtpd "$d")
    describe "${fields[@]}" "ports.lmtp:=$LMTP_PORT" 'auth_mechanisms:=["PLAIN","LOGIN","CRAM-MD5"]' \
      "envelopes=$d/envelopes" "pid_file=$pidfile" "log=$d/log/aiosmtpd.log" >"$d/peer.json"
    cat "$d/peer.json"
  }
  if pidfile_alive "$pidfile"; then note "already running"; saved_json "$d" || aiosmtpd_json; return 0; fi
  # -I: no user site, no PYTHON* variables, no script directory on sys.path
  "$PY" -I -c 'import aiosmtpd.smtp' 2>/dev/null \
    || die "$PY cannot import aiosmtpd: install the test extra (pip install -e '.[test]') or set MAILCLIENT_PEERS_PYTHON"
  refuse_busy_ports "$SMTP_PORT" "$SUBMISSION_PORT" "$SMTPS_PORT" "$LMTP_PORT"
  make_pki

  rm -rf "$d"
  mkdir -p "$d/log"
  "$PY" "$HERE/aiosmtpd_server.py" --host "$HOST" \
    --smtp-port "$SMTP_PORT" --submission-port "$SUBMISSION_PORT" --smtps-port "$SMTPS_PORT" \
    --lmtp-port "$LMTP_PORT" \
    --cert "$PKI/server-chain.crt" --key "$PKI/server.key" \
    --maildir "$d/maildir" --envelopes "$d/envelopes" \
    --user "$PEER_USER" --password "$PEER_PASS" --size-limit "$SIZE_LIMIT" \
    ${MAILCLIENT_PEERS_VERBOSE:+--verbose} \
    </dev/null >"$d/log/aiosmtpd.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$pidfile"
  wait_for_greetings "$pid" "$SMTP_PORT" "$SUBMISSION_PORT" "$SMTPS_PORT/tls" "$LMTP_PORT" \
    || { tail -n 20 "$d/log/aiosmtpd.log" >&2; die "aiosmtpd did not answer"; }
  aiosmtpd_json
}

# ------------------------------------------------------------------- main ----

peers=("$@")
[[ ${#peers[@]} -gt 0 ]] || peers=(postfix aiosmtpd)
status=0
for peer in "${peers[@]}"; do
  case "$peer" in
    postfix | aiosmtpd)
      PEER=$peer started=$(date +%s%N)
      # a subshell per peer: one failing (die) does not stop the others
      if ( "start_$peer" ); then
        note "ready in $(( ($(date +%s%N) - started) / 1000000 )) ms"
      else
        status=1
      fi ;;
    *) echo "usage: $0 [postfix] [aiosmtpd]" >&2; exit 2 ;;
  esac
done
exit $status
