#!/usr/bin/env bash
# Checks what the built .deb holds (dpkg-deb --contents), its conffile and
# its postinst creating the ses-relay system user.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(ls -t target/debian/ses-relay_*.deb | head -1)
contents=$(dpkg-deb --contents "$deb")
echo "$contents"
for path in \
    ./usr/bin/ses-relay \
    ./etc/ses-relay/ses-relay.toml \
    ./usr/share/man/man8/ses-relay.8.gz \
    ./usr/share/bash-completion/completions/ses-relay \
    ./usr/share/zsh/vendor-completions/_ses-relay \
    ./usr/share/fish/vendor_completions.d/ses-relay.fish \
    ./lib/systemd/system/ses-relay.service \
    ./usr/share/doc/ses-relay/README.md; do
    grep -q " $path\$" <<<"$contents" || { echo "missing from $deb: $path" >&2; exit 1; }
done
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
dpkg-deb --control "$deb" "$scratch"
grep -qx /etc/ses-relay/ses-relay.toml "$scratch/conffiles" || { echo "ses-relay.toml is not a conffile" >&2; exit 1; }
grep -q 'useradd --system' "$scratch/postinst" || { echo "postinst does not create the ses-relay user" >&2; exit 1; }
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./lib/systemd/system/ses-relay.service | grep -q '^ExecStart=/usr/bin/ses-relay run' \
    || { echo "the packaged unit does not run /usr/bin/ses-relay" >&2; exit 1; }
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/man/man8/ses-relay.8.gz | gzip -dc | grep -q '^\.TH ses-relay 8' \
    || { echo "the man page is not section 8" >&2; exit 1; }
echo "deb ok: $deb"
