#!/usr/bin/env bash
# Re-fetch the dashboard's front-end assets from npm and check them against the committed hashes.
#
#   scripts/vendor-assets.sh           npm ci (versions and sha512 integrity pinned by package-lock.json),
#                                      copy the files into src/model_go/web/static/vendor/, then verify
#                                      them against vendor/SHA256SUMS: fails if anything differs.
#   scripts/vendor-assets.sh --check   only verify the committed files against SHA256SUMS (no network).
#   scripts/vendor-assets.sh --update  after a deliberate version bump in package.json: npm install,
#                                      copy, and rewrite SHA256SUMS (review the diff before committing).
#
# The server never fetches anything at run time: these files are committed and served from /static/.
set -euo pipefail
cd "$(dirname "$0")/.."

VENDOR=src/model_go/web/static/vendor
# source in node_modules -> file name under vendor/
FILES=(
  "@picocss/pico/css/pico.min.css:pico.min.css"
  "@picocss/pico/LICENSE.md:pico.LICENSE.md"
  "htmx.org/dist/htmx.min.js:htmx.min.js"
  "htmx.org/LICENSE:htmx.LICENSE"
  "chart.js/dist/chart.umd.min.js:chart.umd.min.js"
  "chart.js/LICENSE.md:chart.js.LICENSE.md"
)

verify() {
  (cd "$VENDOR" && sha256sum --quiet --strict -c SHA256SUMS)
  echo "vendor assets match SHA256SUMS"
}

copy() {
  mkdir -p "$VENDOR"
  for pair in "${FILES[@]}"; do
    cp "node_modules/${pair%%:*}" "$VENDOR/${pair##*:}"
  done
}

case "${1:-}" in
  --check)
    verify
    ;;
  --update)
    npm install --ignore-scripts --no-audit --no-fund
    copy
    (cd "$VENDOR" && sha256sum "${FILES[@]##*:}" > SHA256SUMS)
    verify
    ;;
  "")
    npm ci --ignore-scripts --no-audit --no-fund
    copy
    verify
    ;;
  *)
    echo "usage: $0 [--check|--update]" >&2
    exit 2
    ;;
esac
