#!/usr/bin/env bash
# Renders the templates in installer/files for the .deb packages (paths under
# /usr) into installer/deb/, which cargo-deb reads (see [package.metadata.deb]
# in client/Cargo.toml and server/Cargo.toml). The rendered files are
# committed; tests/tests/e2e/installer.rs checks they are current.
#   installer/deb-assets.sh [OUT_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/deb}"
mkdir -p "$out"
for f in ferry.service ferry-tray.desktop ferry-action ferry-history.nemo_action ferry-keep.nemo_action ferry-link.nemo_action \
         ferry-dolphin.desktop ferry-server.service; do
  sed -e "s|@BIN@|/usr/bin|g" -e "s|@ACTIONS@|/usr/share/ferry/ferry-action|g" "$here/files/$f" > "$out/$f"
done
chmod 755 "$out/ferry-action"
