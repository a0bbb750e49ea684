#!/usr/bin/env bash
# Removes what installer/install.sh installed (the files it listed), and
# stops the user service. Never touches a synced folder, the client's state
# or server data.
#
#   installer/uninstall.sh [--prefix DIR]
set -euo pipefail

prefix=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "uninstall.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -n "$prefix" ]; then
  data="$prefix/share"
else
  data="${XDG_DATA_HOME:-$HOME/.local/share}"
fi
manifest="$data/ferry/installed.txt"
if [ ! -f "$manifest" ]; then
  echo "nothing to remove: $manifest is not there (Ferry is not installed here)"
  exit 0
fi
if [ -z "$prefix" ] && command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1; then
  systemctl --user disable --now ferry 2>/dev/null || true
fi
# Only the files install.sh wrote: each line is one path.
while IFS= read -r f; do
  [ -n "$f" ] && [ "$f" != "$manifest" ] && rm -f -- "$f"
done < "$manifest"
rm -f -- "$manifest"
rmdir "$data/ferry" 2>/dev/null || true
if [ -z "$prefix" ] && command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1; then
  systemctl --user daemon-reload
fi
echo "removed Ferry; your synced folder and its settings are untouched"
