#!/usr/bin/env bash
# Installs the real peers the system tests talk to: Postfix (Debian package),
# promtool (package prometheus, for the alert rules), dnsmasq (dnsmasq-base:
# the binary without a system service, a DNS server for the DKIM rotation
# tests) and a Python venv with
# moto (SES v2, SSM and SQS emulator), dkimpy (DKIM verifier) and cfn-lint
# (the fleet's CloudFormation template) and playwright (drives Debian's chromium,
# the status page's browser test); lintian (the .deb) and groff (the man pages).
# Safe to run again: it only installs what is missing. Needs root for apt.
set -euo pipefail

venv=${SES_RELAY_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ses-relay-test-venv}

missing=()
for pkg in postfix python3-venv prometheus dnsmasq-base lintian groff-base man-db chromium; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "peers: installing ${missing[*]} (apt-get)"
    # Install only: no service may start (the system's own Postfix stays down).
    own_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q -o DPkg::Lock::Timeout=300 "${missing[@]}" >/tmp/ses-relay-apt.log 2>&1 || {
        apt-get update -q -o DPkg::Lock::Timeout=300 >>/tmp/ses-relay-apt.log 2>&1
        apt-get install -y -q -o DPkg::Lock::Timeout=300 "${missing[@]}" >>/tmp/ses-relay-apt.log 2>&1
    }
    [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c 'import dkim, moto' 2>/dev/null; then
    echo "peers: creating $venv (moto[server], dkimpy)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5,<6' 'dkimpy>=1.1,<2'
fi
if [ ! -x "$venv/bin/cfn-lint" ]; then
    echo "peers: installing cfn-lint into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'cfn-lint>=1,<2'
fi
if ! "$venv/bin/python" -c 'import playwright' 2>/dev/null; then
    # Only the driver: the browser is Debian's chromium (playwright's own download is not reachable).
    echo "peers: installing playwright into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'playwright>=1.40,<2'
fi
echo "peers: postfix $(postconf -d mail_version 2>/dev/null | cut -d' ' -f3), $("$venv/bin/python" -c 'import moto; print("moto", moto.__version__)'), venv $venv"
