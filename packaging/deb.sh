#!/usr/bin/env bash
# Builds the Debian package (target/debian/ses-relay_*.deb) with cargo-deb:
# the release binary first, then the files it generates for the package (man
# pages ses-relay(8) and ses-relay.toml(5), shell completions), the README and
# docs/*.md compressed (Debian policy 12.3), and the systemd unit pointed at /usr/bin, then
# `cargo deb --no-build`, which packs them as [package.metadata.deb] says.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-deb 3.8.0 needs Rust 1.85; installed once if missing.
deb_version=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "^cargo-deb $deb_version\$"; then
    nice -n 10 cargo install --locked "cargo-deb@=$deb_version"
fi

cargo build --release --locked --bin ses-relay
bin=target/release/ses-relay
out=target/deb-assets
rm -rf "$out"
mkdir -p "$out"
"$bin" man | gzip -9n >"$out/ses-relay.8.gz"
"$bin" man --section 5 | gzip -9n >"$out/ses-relay.toml.5.gz"
gzip -9n <README.md >"$out/README.md.gz"
# docs/ keeps its place beside the README (/usr/share/doc/ses-relay/docs/), so
# the README's links and the documents' links to each other still lead somewhere.
mkdir -p "$out/docs"
for doc in docs/*.md; do
    gzip -9n <"$doc" >"$out/docs/$(basename "$doc").gz"
done
"$bin" completions bash >"$out/ses-relay.bash"
"$bin" completions zsh >"$out/_ses-relay"
"$bin" completions fish >"$out/ses-relay.fish"
sed 's#/usr/local/bin/ses-relay#/usr/bin/ses-relay#g' systemd/ses-relay.service >"$out/ses-relay.service"

cargo deb --no-build --locked "$@"
