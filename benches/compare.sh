#!/usr/bin/env bash
# Side-by-side throughput, the same load from Postfix's smtp-source against:
#   (a) ses-relay (release build) DKIM-signing and sending to a fixed-response
#       SES stand-in (nginx answering POST /v2/email/outbound-emails);
#   (b) the incumbent: Postfix + OpenDKIM milter + header_checks
#       (X-SES-CONFIGURATION-SET) relaying to smtp-sink;
#   (c) smtp-sink alone: the ceiling of the load tools themselves.
# Prints messages/s for each and the ratios, in one run, and the relay's CPU
# per message against one RSA-2048 signature (`openssl speed`, same run).
#
# With SES_RELAY_LOAD_BIN=/path/to/another/ses-relay, leg (a) compares this
# build with that one in the same run: --rounds rounds (default 3), each build
# once a round on a fresh process with the same config and the same load, the
# order swapped every round. It prints each round's messages/s and CPU per
# message, each build's median and spread (min-max), the new/old ratio of the
# medians and whether the difference is within the run-to-run spread (the
# rule: the medians differ by no more than the larger of the two builds'
# spreads; see verdict() below).
#
# Installs its peers (Debian packages) when missing and removes everything it
# started.
#
#   [SES_RELAY_LOAD_BIN=path] bash benches/compare.sh [--messages N] [--sessions S] [--size BYTES] [--rounds R]
set -euo pipefail

N=10000
S=20
SIZE=4000
ROUNDS=3
usage="usage: [SES_RELAY_LOAD_BIN=path] $0 [--messages N] [--sessions S] [--size BYTES] [--rounds R]"
while [ $# -gt 0 ]; do
    case $1 in
        --messages) N=$2; shift 2 ;;
        --sessions) S=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
[ "$ROUNDS" -ge 1 ] 2>/dev/null || { echo "$usage" >&2; exit 2; }
old_bin=${SES_RELAY_LOAD_BIN:-}
if [ -n "$old_bin" ]; then
    # One round has no spread to weigh a difference against.
    [ "$ROUNDS" -ge 2 ] || { echo "compare: --rounds must be at least 2 with SES_RELAY_LOAD_BIN" >&2; exit 2; }
    old_bin=$(realpath -m "$old_bin")
    [ -x "$old_bin" ] || { echo "compare: SES_RELAY_LOAD_BIN=$old_bin is not an executable" >&2; exit 2; }
fi

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/ses-relay-compare.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}" ${relay_pid:-}; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/pf/etc/main.cf" ] && postfix -c "$work/pf/etc" stop >/dev/null 2>&1 || true
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    sleep 0.5
    rm -rf "$work"
}
trap cleanup EXIT

need=()
for pkg in postfix opendkim opendkim-tools nginx-light openssl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "compare: installing ${need[*]}" >&2
    own_policy=
    [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; own_policy=1; }
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >"$work/apt.log" 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$work/apt.log" 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >>"$work/apt.log" 2>&1
    }
    [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "compare: nothing listens on $1" >&2
    return 1
}
# sink_count FILE: messages smtp-sink -c has counted so far.
sink_count() { tail -c 300 "$1" 2>/dev/null | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2; }
start_sink() { # PORT COUNTFILE
    smtp-sink -u nobody -c "127.0.0.1:$1" 1000 </dev/null >"$2" 2>>"$work/sink.err" &
    pids+=($!)
    wait_port "$1"
}
# load LABEL PORT [COUNTFILE]: smtp-source; with COUNTFILE, also wait until the sink counted N.
load() {
    local start end n
    start=$(date +%s.%N)
    smtp-source -d -s "$S" -m "$N" -l "$SIZE" -f a@goo.ne.jp -t b@example.com "127.0.0.1:$2" \
        >"$work/source-$1.log" 2>&1 || { echo "compare: smtp-source failed: $(head -3 "$work/source-$1.log")" >&2; exit 1; }
    if [ -n "${3:-}" ]; then
        for _ in $(seq 1 6000); do
            n=$(sink_count "$3"); [ "${n:-0}" -ge "$N" ] && break
            sleep 0.05
        done
    fi
    end=$(date +%s.%N)
    python3 -c "print(f'{$N / ($end - $start):.0f}')"
}

echo "compare: $N messages of $SIZE bytes over $S sessions, each setup on this machine ($(nproc) cores)" >&2

# (c) the ceiling: smtp-source straight into smtp-sink.
port_c=$(free_port)
start_sink "$port_c" "$work/sink-c.count"
rate_c=$(load sink "$port_c" "$work/sink-c.count")

# (b) the incumbent: Postfix + OpenDKIM + header_checks -> smtp-sink.
sink_b=$(free_port); port_b=$(free_port)
start_sink "$sink_b" "$work/sink-b.count"
mkdir -p "$work/keys" "$work/pf/etc" "$work/pf/spool" "$work/pf/data" "$work/dkim"
opendkim-genkey -b 2048 -s gooid-21-prod -d goo.ne.jp -D "$work/keys"
chown -R opendkim:opendkim "$work/keys" "$work/dkim"; chmod 700 "$work/keys"
chown postfix: "$work/pf/data"
cat >"$work/dkim/opendkim.conf" <<EOF
Syslog no
Mode s
Domain goo.ne.jp
Selector gooid-21-prod
KeyFile $work/keys/gooid-21-prod.private
Canonicalization relaxed/relaxed
SignatureAlgorithm rsa-sha256
InternalHosts 127.0.0.0/8
Socket local:$work/dkim/sock
UMask 000
UserID opendkim
RequireSafeKeys false
EOF
chmod 755 "$work/dkim"
opendkim -f -x "$work/dkim/opendkim.conf" </dev/null >"$work/dkim/out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -S "$work/dkim/sock" ] && break; sleep 0.1; done
printf '/^Message-ID:/ PREPEND X-SES-CONFIGURATION-SET: ses-migration-production-config-set\n' >"$work/pf/etc/header_checks"
cat >"$work/pf/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $work/pf/spool
data_directory = $work/pf/data
syslog_name = postfix-compare
maillog_file = $work/pf/maillog
maillog_file_prefixes = $work
myhostname = postfix-compare.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:$sink_b
smtp_tls_security_level = none
smtpd_milters = unix:$work/dkim/sock
milter_default_action = tempfail
header_checks = regexp:$work/pf/etc/header_checks
EOF
{
    echo "127.0.0.1:$port_b inet n - n - - smtpd"
    for svc in "pickup unix n - n 60 1 pickup" "cleanup unix n - n - 0 cleanup" "qmgr unix n - n 300 1 qmgr" \
        "rewrite unix - - n - - trivial-rewrite" "bounce unix - - n - 0 bounce" "defer unix - - n - 0 bounce" \
        "trace unix - - n - 0 bounce" "verify unix - - n - 1 verify" "flush unix n - n 1000? 0 flush" \
        "proxymap unix - - n - - proxymap" "smtp unix - - n - - smtp" "relay unix - - n - - smtp" \
        "showq unix n - n - - showq" "error unix - - n - - error" "retry unix - - n - - error" \
        "discard unix - - n - - discard" "anvil unix - - n - 1 anvil" "scache unix - - n - 1 scache" \
        "postlog unix-dgram n - n - 1 postlogd"; do
        echo "$svc"
    done
} >"$work/pf/etc/master.cf"
touch -d '-10 seconds' "$work/pf/etc/"*
postfix -c "$work/pf/etc" start >/dev/null 2>&1
wait_port "$port_b"
rate_b=$(load postfix "$port_b" "$work/sink-b.count")

# (a) ses-relay, release build, with the same key size, to the nginx SES stand-in.
(cd "$root" && cargo build --release --locked -q)
ses_port=$(free_port); relay_port=$(free_port); admin_port=$(free_port)
mkdir -p "$work/nginx/tmp"
cat >"$work/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 16384;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $work/nginx/tmp;
    client_max_body_size 50m;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$ses_port backlog=4096;
        location = /v2/email/outbound-emails { default_type application/json; return 200 '{"MessageId":"0100018c-fast-ses"}'; }
        location / { return 404; }
    }
}
EOF
nginx -p "$work/nginx/" -e "$work/nginx/error.log" -c "$work/nginx.conf" </dev/null >/dev/null 2>&1 &
pids+=($!)
wait_port "$ses_port"
cp "$work/keys/gooid-21-prod.private" "$work/relay-key.pem"
cat >"$work/relay.toml" <<EOF
[smtp]
listen = ["127.0.0.1:$relay_port"]
hostname = "relay.compare"
max-connections = 2000
[[dkim.keys]]
domain = "goo.ne.jp"
selector = "gooid-21-prod"
private-key = "$work/relay-key.pem"
[dkim]
dns-check-interval = "0s"
[ses]
mode = "api"
endpoint-url = "http://127.0.0.1:$ses_port"
configuration-set = "ses-migration-production-config-set"
[admin]
listen = "127.0.0.1:$admin_port"
[log]
level = "warn"
EOF
# proc_stat PID: /proc/PID/stat after "pid (comm) ", so that a name with spaces
# shifts no field: $1 is the state, $12 + $13 user + system time in clock ticks.
proc_stat() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null; }
# cpu_ticks PID: the CPU time of the process so far, all its threads.
cpu_ticks() { proc_stat "$1" | awk '{print $12 + $13}'; }
# exited PID: true once our child PID has exited (a zombie until waited for,
# so kill -0 would still succeed).
exited() { [ "$(proc_stat "$1" | cut -d' ' -f1)" = Z ] || [ ! -e "/proc/$1" ]; }
relay_pid=
# relay_round BINARY LABEL: one fresh relay process with relay.toml under the
# load; appends "LABEL messages/s CPU-seconds-per-message" to $work/rounds.
# CPU is counted from listening to the load's end: start-up is left out.
relay_round() {
    local before after rate
    AWS_ACCESS_KEY_ID=compare AWS_SECRET_ACCESS_KEY=compare AWS_EC2_METADATA_DISABLED=true \
        "$1" run --config "$work/relay.toml" </dev/null >/dev/null 2>"$work/relay-$2.log" &
    relay_pid=$!
    wait_port "$relay_port" || { cat "$work/relay-$2.log" >&2; exit 1; }
    before=$(cpu_ticks "$relay_pid")
    rate=$(load "ses-relay-$2" "$relay_port")
    after=$(cpu_ticks "$relay_pid")
    # SIGTERM drains; every session has ended, so it exits at once. The next
    # round binds the same port (the listener sets SO_REUSEADDR).
    kill "$relay_pid"
    for _ in $(seq 1 300); do exited "$relay_pid" && break; sleep 0.1; done
    exited "$relay_pid" || kill -KILL "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=
    echo "$2 $rate $(python3 -c "print(($after - $before) / $(getconf CLK_TCK) / $N)")" >>"$work/rounds"
}
new_bin=$root/target/release/ses-relay
if [ -z "$old_bin" ]; then
    relay_round "$new_bin" new
else
    # Both builds must take this one config as it is: a key only one of them
    # knows would be refused by the other (unknown keys are errors).
    for bin in "$new_bin" "$old_bin"; do
        "$bin" check-config --config "$work/relay.toml" >"$work/check-config.out" 2>&1 || {
            echo "compare: $bin refuses the config:" >&2; cat "$work/check-config.out" >&2; exit 1; }
    done
    for round in $(seq 1 "$ROUNDS"); do
        # The order swaps every round, so that neither build always runs first
        # on a machine whose speed drifts from minute to minute.
        if [ $((round % 2)) -eq 1 ]; then order="new old"; else order="old new"; fi
        for build in $order; do
            echo "compare: leg (a) round $round of $ROUNDS, $build build" >&2
            if [ "$build" = new ]; then relay_round "$new_bin" new; else relay_round "$old_bin" old; fi
        done
    done
fi
# One RSA-2048 signature on this machine now: openssl's sign time (seconds).
rsa=$(openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ {sub("s$", "", $4); print $4}')

python3 - "$work/rounds" "$rate_b" "$rate_c" "$rsa" "$ROUNDS" "$old_bin" <<'EOF'
import statistics, sys
rounds_file, b, c, rsa, rounds, old_bin = sys.argv[1:]
b, c, rsa = float(b), float(c), float(rsa)
runs = {"new": [], "old": []}  # build -> [(messages/s, CPU seconds per message)], in round order
for line in open(rounds_file):
    build, rate, cpu = line.split()
    runs[build].append((float(rate), float(cpu)))
rates = {k: [r for r, _ in v] for k, v in runs.items()}
cpus = {k: [x * 1000 for _, x in v] for k, v in runs.items()}  # ms
a, cpu = statistics.median(rates["new"]), statistics.median(cpus["new"]) / 1000
of_rounds = f" (median of {rounds} rounds)" if old_bin else ""
print(f"(a) ses-relay -> nginx SES stand-in:       {a:8.0f} messages/s{of_rounds}")
print(f"(b) Postfix + OpenDKIM -> smtp-sink:       {b:8.0f} messages/s")
print(f"(c) smtp-sink alone (ceiling):             {c:8.0f} messages/s")
print(f"ratios: ses-relay / Postfix+OpenDKIM = {a / b:.1f}x; ses-relay / smtp-sink = {a / c:.2f}")
print(f"relay CPU per message{of_rounds}: {cpu * 1000:.3f} ms; one RSA-2048 signature (openssl speed): "
      f"{rsa * 1000:.3f} ms; ratio {cpu / rsa:.2f}x")
if not old_bin:
    sys.exit()

# The rule: a difference is within the run-to-run spread when the medians
# differ by no more than the larger of the two builds' spreads (max - min over
# their rounds). It weighs the difference against the noise each build showed
# in this run; the other plausible rule, "the ranges overlap", passes a
# difference as large as both spreads together.
def verdict(new, old, unit, fmt, lower_is_better):
    diff = statistics.median(new) - statistics.median(old)
    spread = max(max(new) - min(new), max(old) - min(old))
    if abs(diff) <= spread:
        word = "within the run-to-run spread"
    elif (diff < 0) == lower_is_better:
        word = "BETTER beyond the run-to-run spread"
    else:
        word = "WORSE beyond the run-to-run spread"
    return (f"new/old {statistics.median(new) / statistics.median(old):.3f}: {word} "
            f"(medians differ by {diff:+{fmt}}{unit}, the larger spread is {spread:{fmt}}{unit})")

print()
print(f"leg (a), this build (new) against SES_RELAY_LOAD_BIN={old_bin} (old),")
print(f"{rounds} rounds, each build once a round on a fresh relay, the order swapped every round:")
print(f"{'':18}{'messages/s':>24}   {'relay CPU per message (ms)':>28}")
print(f"{'':18}{'new':>12}{'old':>12}   {'new':>14}{'old':>14}")
for i in range(len(rates["new"])):
    print(f"{'round ' + str(i + 1):18}{rates['new'][i]:12.0f}{rates['old'][i]:12.0f}   "
          f"{cpus['new'][i]:14.3f}{cpus['old'][i]:14.3f}")
med = lambda k, v: statistics.median(v[k])
span = lambda k, v, f: f"{min(v[k]):{f}}-{max(v[k]):{f}}"
print(f"{'median':18}{med('new', rates):12.0f}{med('old', rates):12.0f}   "
      f"{med('new', cpus):14.3f}{med('old', cpus):14.3f}")
print(f"{'spread (min-max)':18}{span('new', rates, '.0f'):>12}{span('old', rates, '.0f'):>12}   "
      f"{span('new', cpus, '.3f'):>14}{span('old', cpus, '.3f'):>14}")
print("rule: within the run-to-run spread = |median new - median old| <= the larger spread (max - min)")
print("messages/s:            " + verdict(rates["new"], rates["old"], "/s", ".0f", lower_is_better=False))
print("CPU per message:       " + verdict(cpus["new"], cpus["old"], " ms", ".3f", lower_is_better=True))
EOF
