#!/usr/bin/env bash
# Self-host DingTalk's JSAPI for the H5 shell (hospital intranets often cannot reach a CDN).
#
# The npm package `dingtalk-jsapi` ships CommonJS modules only (no browser bundle since 2.x), so this fetches the
# pinned tarballs from the npm registry (with `npm pack`, or curl when npm is missing), checks each against the
# sha512 integrity the registry publishes, and bundles `index.js` (every API, like the CDN's dingtalk.open.js)
# into one script that sets `window.dd`: workbench/static/h5/vendor/dingtalk.open.js (gitignored).
#
# Idempotent: does nothing when the bundle of this version is already there (delete the folder to force).
set -euo pipefail
cd "$(dirname "$0")/.."

JSAPI_VERSION=3.2.9
JSAPI_SHA512="VLt8co92z29bdguxUvJLnhpQn7WFjb5rJTODDczieS7I0yyWj5+KwF04sWfMvyIKX0MQPVL++Fyo6z2JucFpgQ=="
# dingtalk-jsapi's one dependency (^7.1.0).
POLYFILL_VERSION=7.1.2
POLYFILL_SHA512="FuEc12/eKqqoRYIGBrUptCBRhobL19PS2U31vMNTfyck1FxPyMfgsXyW4Mav85y/ZN1hop3hOwRlUDok23oYfQ=="
REGISTRY="${NPM_REGISTRY:-https://registry.npmjs.org}"

out_dir=workbench/static/h5/vendor
out="$out_dir/dingtalk.open.js"
stamp="$out_dir/VERSION"
if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "dingtalk-jsapi@$JSAPI_VERSION" ]; then
  touch "$out" # newer than this script, for make
  exit 0
fi

PYTHON="${PYTHON:-$(command -v python3)}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# fetch NAME VERSION SHA512 -> $tmp/NAME (unpacked), integrity checked
fetch() {
  local name=$1 version=$2 sha=$3 tgz="$tmp/$1-$2.tgz"
  if command -v npm >/dev/null 2>&1 \
    && (cd "$tmp" && npm pack --silent --registry "$REGISTRY" "$name@$version" >/dev/null 2>"$tmp/npm.log"); then
    :
  else
    echo "vendor-js: npm unavailable or failed, fetching $name@$version with curl" >&2
    curl -fsSL --retry 3 -o "$tgz" "$REGISTRY/$name/-/$name-$version.tgz"
  fi
  local got
  got=$("$PYTHON" -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tgz")
  if [ "$got" != "$sha" ]; then
    echo "vendor-js: integrity mismatch for $name@$version: sha512-$got, want sha512-$sha" >&2
    exit 1
  fi
  mkdir -p "$tmp/$name"
  tar -xzf "$tgz" -C "$tmp/$name" --strip-components=1
}

fetch dingtalk-jsapi "$JSAPI_VERSION" "$JSAPI_SHA512"
fetch promise-polyfill "$POLYFILL_VERSION" "$POLYFILL_SHA512"

mkdir -p "$out_dir"
"$PYTHON" - "$tmp" "$out.tmp" "$JSAPI_VERSION" <<'PY'
"""A minimal CommonJS bundler: follow the literal require() calls from index.js, wrap each module in a function."""

import json
import re
import sys
from pathlib import Path

root, out, version = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
packages = {"dingtalk-jsapi": root / "dingtalk-jsapi", "promise-polyfill": root / "promise-polyfill"}
REQUIRE = re.compile(r"""(?<![\w$.])require\((["'])([^"']+)\1\)""")


def resolve(spec: str, base: Path) -> Path:
    if spec.startswith("."):
        target = (base / spec).resolve()
    else:
        name, _, rest = spec.partition("/")
        if name not in packages:
            sys.exit(f"vendor-js: unexpected dependency {spec!r}")
        target = packages[name] / rest if rest else packages[name] / "index.js"
    for candidate in (target, target.with_name(target.name + ".js"), target / "index.js"):
        if candidate.is_file():
            return candidate
    sys.exit(f"vendor-js: cannot resolve {spec!r} from {base}")


ids: dict[Path, int] = {}
modules: list[str] = []


def add(path: Path) -> int:
    if path in ids:
        return ids[path]
    ids[path] = len(ids)
    modules.append("")
    source = path.read_text(encoding="utf-8")
    deps = {spec: add(resolve(spec, path.parent)) for _, spec in REQUIRE.findall(source)}
    modules[ids[path]] = (
        f"[function(require,module,exports){{\n{source}\n}},{json.dumps(deps, separators=(',', ':'))}]"
    )
    return ids[path]


entry = add(packages["dingtalk-jsapi"] / "index.js")
bundle = (
    f"/*! dingtalk-jsapi {version} (MIT), bundled for self-hosting by scripts/vendor-js.sh */\n"
    "(function(){var defs=[" + ",\n".join(modules) + "],cache={};"
    "function load(id){var c=cache[id];if(c)return c.exports;var m=cache[id]={exports:{}},d=defs[id];"
    "d[0].call(m.exports,function(s){if(!(s in d[1]))throw new Error('dingtalk-jsapi bundle: '+s);"
    "return load(d[1][s])},m,m.exports);return m.exports}"
    f"var dd=load({entry});window.dd=dd&&dd.default||dd;}})();\n"
)
out.write_text(bundle, encoding="utf-8")
print(f"vendor-js: {len(ids)} modules, {len(bundle) // 1024} KiB", file=sys.stderr)
PY
mv "$out.tmp" "$out"
echo "dingtalk-jsapi@$JSAPI_VERSION" >"$stamp"
echo "vendor-js: wrote $out (dingtalk-jsapi@$JSAPI_VERSION)" >&2
