#!/usr/bin/env bash
# Installs Ferry for the current user from this checkout:
#   ferry in ~/.local/bin, a systemd user unit (ferry.service: the daemon,
#   restarted on failure), the tray started at login (XDG autostart),
#   file-manager actions (GNOME Files/Nautilus, Nemo,
#   Caja, Dolphin); with --server also ferry-server, an example system unit
#   and a commented configuration file.
# Idempotent: running it again replaces what it installed. It never touches
# a synced folder or server data. Undo with installer/uninstall.sh.
#
#   installer/install.sh [--server] [--prefix DIR] [--binaries DIR]
#
#   --prefix DIR    install under DIR (DIR/bin, DIR/config, DIR/share) instead
#                   of ~/.local/bin, ~/.config and ~/.local/share (tests, staging)
#   --binaries DIR  take ferry (and ferry-server) from DIR instead of building
#                   them with cargo (profile dist: release code, stripped;
#                   ferry without the embedded server)
#   --server        also install ferry-server
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
prefix="" binaries="" server=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
    --binaries) binaries="${2:?--binaries needs a folder}"; shift 2 ;;
    --server) server=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -n "$prefix" ]; then
  mkdir -p "$prefix"
  prefix="$(cd "$prefix" && pwd)"
  bin="$prefix/bin" config="$prefix/config" data="$prefix/share"
else
  bin="$HOME/.local/bin"
  config="${XDG_CONFIG_HOME:-$HOME/.config}"
  data="${XDG_DATA_HOME:-$HOME/.local/share}"
fi

if [ -z "$binaries" ]; then
  # The desktop client holds no server: with --server, `ferry quickstart`
  # runs the ferry-server installed beside it.
  echo "building ferry (cargo build --profile dist -p ferry --no-default-features --features tray) ..."
  (cd "$repo" && cargo build --profile dist --locked -p ferry --no-default-features --features tray)
  if [ "$server" = 1 ]; then
    echo "building ferry-server (cargo build --profile dist -p ferry-server) ..."
    (cd "$repo" && cargo build --profile dist --locked -p ferry-server)
  fi
  binaries="${CARGO_TARGET_DIR:-$repo/target}/dist"
fi
for b in ferry $([ "$server" = 1 ] && echo ferry-server); do
  [ -x "$binaries/$b" ] || { echo "install.sh: $binaries/$b is missing: build it, or leave out --binaries" >&2; exit 1; }
done

manifest="$data/ferry/installed.txt"
mkdir -p "$data/ferry"
: > "$manifest.new"

# put SOURCE TARGET MODE: installs one file (templates get @BIN@ filled in)
# and records it for uninstall.sh.
put() {
  mkdir -p "$(dirname "$2")"
  sed -e "s|@BIN@|$bin|g" -e "s|@ACTIONS@|$data/ferry/ferry-action|g" "$1" > "$2.tmp"
  chmod "$3" "$2.tmp"
  mv -f "$2.tmp" "$2"
  echo "$2" >> "$manifest.new"
}

mkdir -p "$bin"
for b in ferry $([ "$server" = 1 ] && echo ferry-server); do
  install -m 755 "$binaries/$b" "$bin/$b.tmp" && mv -f "$bin/$b.tmp" "$bin/$b"
  echo "$bin/$b" >> "$manifest.new"
done

put "$here/files/ferry.service" "$config/systemd/user/ferry.service" 644
put "$here/files/ferry-tray.desktop" "$config/autostart/ferry-tray.desktop" 644
put "$here/files/ferry-action" "$data/ferry/ferry-action" 755
# File managers: the same three actions, each calling the CLI.
for action in history keep link; do
  case "$action" in
    history) title="Ferry: version history" ;;
    keep) title="Ferry: keep this version" ;;
    link) title="Ferry: copy share link" ;;
  esac
  for dir in "$data/nautilus/scripts" "$config/caja/scripts"; do
    mkdir -p "$dir"
    printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$data/ferry/ferry-action" "$action" > "$dir/$title"
    chmod 755 "$dir/$title"
    echo "$dir/$title" >> "$manifest.new"
  done
  put "$here/files/ferry-$action.nemo_action" "$data/nemo/actions/ferry-$action.nemo_action" 644
done
put "$here/files/ferry-dolphin.desktop" "$data/kio/servicemenus/ferry.desktop" 755

if [ "$server" = 1 ]; then
  put "$here/files/ferry-server.service" "$data/ferry/ferry-server.service.example" 644
  put "$here/files/ferry-server.env" "$data/ferry/ferry-server.env.example" 644
fi
echo "$manifest" >> "$manifest.new"
mv -f "$manifest.new" "$manifest"

echo "installed Ferry in $bin (the list of files: $manifest)"
if [ -z "$prefix" ] && command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1; then
  systemctl --user daemon-reload
  echo "log in once (ferry login --server URL --user NAME --folder DIR), then start syncing at every login:"
  echo "  systemctl --user enable --now ferry"
else
  echo "log in once (ferry login ...), then run \`ferry daemon\` (or enable $config/systemd/user/ferry.service)"
fi
if [ "$server" = 1 ]; then
  echo "server: see $data/ferry/ferry-server.service.example and ferry-server.env.example"
fi
case ":$PATH:" in *":$bin:"*) ;; *) echo "note: $bin is not on your PATH" ;; esac
