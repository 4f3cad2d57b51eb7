#!/usr/bin/env bash
# Checks what the built .deb holds (dpkg-deb --contents), its conffile, its
# maintainer scripts (postinst creates the ses-relay user, prerm stops and
# disables the service, postrm purges the user and the state), its copyright,
# both manual pages and the documents (README and docs/*.md, gzipped).
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(ls -t target/debian/ses-relay_*.deb | head -1)
contents=$(dpkg-deb --contents "$deb")
echo "$contents"
for path in \
    ./usr/bin/ses-relay \
    ./etc/ses-relay/ses-relay.toml \
    ./usr/share/man/man8/ses-relay.8.gz \
    ./usr/share/man/man5/ses-relay.toml.5.gz \
    ./usr/share/doc/ses-relay/copyright \
    ./usr/share/bash-completion/completions/ses-relay \
    ./usr/share/zsh/vendor-completions/_ses-relay \
    ./usr/share/fish/vendor_completions.d/ses-relay.fish \
    ./lib/systemd/system/ses-relay.service \
    ./usr/share/doc/ses-relay/README.md.gz; do
    grep -q " $path\$" <<<"$contents" || { echo "missing from $deb: $path" >&2; exit 1; }
done
# Every document of docs/ (the quickstart and the rest), gzipped beside the
# README as in the repository, and the same text as the source.
for doc in docs/*.md; do
    path=./usr/share/doc/ses-relay/docs/$(basename "$doc").gz
    grep -q " $path\$" <<<"$contents" || { echo "missing from $deb: $path" >&2; exit 1; }
done
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
dpkg-deb --control "$deb" "$scratch"
grep -qx /etc/ses-relay/ses-relay.toml "$scratch/conffiles" || { echo "ses-relay.toml is not a conffile" >&2; exit 1; }
grep -q 'useradd --system' "$scratch/postinst" || { echo "postinst does not create the ses-relay user" >&2; exit 1; }
for script in prerm postrm; do
    [ -x "$scratch/$script" ] || { echo "no executable $script in $deb" >&2; exit 1; }
done
grep -q 'deb-systemd-invoke stop ses-relay' "$scratch/prerm" && grep -q 'deb-systemd-helper disable ses-relay' "$scratch/prerm" \
    || { echo "prerm does not stop and disable the service" >&2; exit 1; }
grep -q 'userdel ses-relay' "$scratch/postrm" && grep -q 'rm -rf /var/lib/ses-relay' "$scratch/postrm" \
    || { echo "postrm does not remove the user and /var/lib/ses-relay" >&2; exit 1; }
copyright=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/doc/ses-relay/copyright)
grep -q '^License: MIT or Apache-2.0$' <<<"$copyright" && ! grep -qi 'copyright information missing' <<<"$copyright" \
    || { echo "the copyright file does not state MIT or Apache-2.0" >&2; exit 1; }
# A file of the package, read whole before it is searched: `grep -q` stops
# at the first match, and under pipefail the writer's SIGPIPE would fail the check.
packaged() { dpkg-deb --fsys-tarfile "$deb" | tar -xO "$1"; }
unit=$(packaged ./lib/systemd/system/ses-relay.service)
grep -q '^ExecStart=/usr/bin/ses-relay run' <<<"$unit" \
    || { echo "the packaged unit does not run /usr/bin/ses-relay" >&2; exit 1; }
man8=$(packaged ./usr/share/man/man8/ses-relay.8.gz | gzip -dc)
grep -q '^\.TH ses-relay 8' <<<"$man8" \
    || { echo "the man page is not section 8" >&2; exit 1; }
man5=$(packaged ./usr/share/man/man5/ses-relay.toml.5.gz | gzip -dc)
grep -q '^\.TH ses-relay.toml 5' <<<"$man5" \
    || { echo "the configuration man page is not section 5" >&2; exit 1; }
for doc in README.md docs/*.md; do
    packaged "./usr/share/doc/ses-relay/$doc.gz" | gzip -dc >"$scratch/doc"
    cmp -s "$scratch/doc" "$doc" || { echo "the packaged $doc.gz is not $doc" >&2; exit 1; }
done
config=$(packaged ./etc/ses-relay/ses-relay.toml)
grep -q '^listen = \["127.0.0.1:' <<<"$config" \
    || { echo "the shipped config does not listen on loopback" >&2; exit 1; }
echo "deb ok: $deb"
