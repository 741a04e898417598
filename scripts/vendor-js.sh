#!/usr/bin/env bash
# Self-host the H5 pages' third-party scripts (hospital intranets often cannot reach a CDN).
#
# Installs the versions pinned in scripts/jsapi/package-lock.json (npm checks each tarball against the lock's
# sha512 integrity), then into workbench/static/h5/vendor/ (gitignored):
# - dingtalk.open.js: `dingtalk-jsapi` ships CommonJS modules only, no browser bundle, so esbuild bundles it into
#   one script that sets `window.dd` (the shell);
# - echarts.min.js: ECharts' own browser build, copied as published (sets `window.echarts`; the supervision
#   dashboard's charts).
#
# Idempotent: does nothing when every file of this lock file is already there (delete the folder to force).
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir=workbench/static/h5/vendor
out="$out_dir/dingtalk.open.js"
charts="$out_dir/echarts.min.js"
stamp="$out_dir/LOCK_SHA256"
lock_sha=$(sha256sum scripts/jsapi/package-lock.json | cut -d' ' -f1)
if [ -f "$out" ] && [ -f "$charts" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$lock_sha" ]; then
  touch "$out" "$charts" # newer than this script, for make
  exit 0
fi
command -v npm >/dev/null || { echo "vendor-js: npm is needed (Debian: apt-get install npm)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp scripts/jsapi/package.json scripts/jsapi/package-lock.json scripts/jsapi/entry.js "$tmp/"
# --ignore-scripts: nothing from the registry runs here; esbuild's binary comes as its platform package.
(cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
mkdir -p "$out_dir"
"$tmp/node_modules/.bin/esbuild" "$tmp/entry.js" --bundle --minify --format=iife --target=es2017 \
  --legal-comments=inline --log-level=warning --outfile="$out.tmp"
cp "$tmp/node_modules/echarts/dist/echarts.min.js" "$charts.tmp"
mv "$out.tmp" "$out"
mv "$charts.tmp" "$charts"
echo "$lock_sha" >"$stamp"
echo "vendor-js: wrote $out ($(grep -o '"dingtalk-jsapi": "[^"]*"' scripts/jsapi/package.json))" >&2
echo "vendor-js: wrote $charts ($(grep -o '"echarts": "[^"]*"' scripts/jsapi/package.json))" >&2
