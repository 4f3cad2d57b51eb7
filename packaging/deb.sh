#!/usr/bin/env bash
# Builds the Debian package (target/debian/ses-relay_*.deb) with cargo-deb:
# the release binary first, then the files it generates for the package (man
# page, shell completions) and the systemd unit pointed at /usr/bin, then
# `cargo deb --no-build`, which packs them as [package.metadata.deb] says.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null || cargo install --locked cargo-deb

cargo build --release --locked --bin ses-relay
bin=target/release/ses-relay
out=target/deb-assets
rm -rf "$out"
mkdir -p "$out"
"$bin" man | gzip -9n >"$out/ses-relay.8.gz"
"$bin" completions bash >"$out/ses-relay.bash"
"$bin" completions zsh >"$out/_ses-relay"
"$bin" completions fish >"$out/ses-relay.fish"
sed 's#/usr/local/bin/ses-relay#/usr/bin/ses-relay#g' systemd/ses-relay.service >"$out/ses-relay.service"

cargo deb --no-build --locked "$@"
