#!/usr/bin/env bash
# Re-create .dvc/plots_template.html: DVC's HTML page for `dvc plots show` / `dvc plots diff` with
# vega, vega-lite and vega-embed inlined, so the page renders offline (DVC's default page loads
# them from a CDN). The versions are the ones DVC's default page references (dvc_render's
# VegaRenderer.SCRIPTS); the npm tarballs are checked against the sha512 pinned here.
# Usage: bench/vendor_vega.sh [OUT, from the repository root] (or `make vendor-vega`); needs npm,
# tar and openssl.
set -euo pipefail

cd "$(dirname "$0")/.."
out=${1:-.dvc/plots_template.html}

# name version sha512 (npm's dist.integrity), in the order the page loads them
packages=(
  "vega 5.20.2 qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw=="
  "vega-lite 5.2.0 Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw=="
  "vega-embed 6.18.2 wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg=="
)

version() { for e in "${packages[@]}"; do read -r n v _ <<<"$e"; [ "$n" = "$1" ] && echo "$v"; done; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for entry in "${packages[@]}"; do
  read -r name version sha <<<"$entry"
  (cd "$work" && npm pack --silent "$name@$version" >/dev/null)
  tgz="$work/$name-$version.tgz"
  got=$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)
  [ "$got" = "$sha" ] || { echo "$name@$version: sha512 $got, expected $sha" >&2; exit 1; }
  mkdir "$work/$name"
  tar -xzf "$tgz" -C "$work/$name" package/build/"$name".min.js package/LICENSE
  js="$work/$name/package/build/$name.min.js"
  # the page has no source maps; dvc_render fills the page with str.replace of {scripts},
  # {plot_divs} and {refresh_tag}, and a "</script" would end the inline script early
  sed -i '/^\/\/# sourceMappingURL=/d' "$js"
  if grep -q -e '</script' -e '{scripts}' -e '{plot_divs}' -e '{refresh_tag}' "$js"; then
    echo "$name@$version: the script holds </script or a dvc_render placeholder; cannot inline it" >&2
    exit 1
  fi
done

{
  cat <<EOF
<!DOCTYPE html>
<!--
  The page of \`dvc plots show\` / \`dvc plots diff\` (.dvc/config: plots.html_template), made by
  bench/vendor_vega.sh: DVC puts the plots where the plot_divs placeholder is. Inlined below, from
  npm: vega $(version vega), vega-lite $(version vega-lite), vega-embed $(version vega-embed), each under the
  BSD-3-Clause licence that follows. Their bundles include small libraries under permissive
  licences of their own (d3 modules: ISC; tslib: 0BSD; fast-json-patch, json-stringify-pretty-compact:
  MIT; semver: ISC).

EOF
  for entry in "${packages[@]}"; do
    read -r name _ _ <<<"$entry"
    echo "  $name: $(head -n1 "$work/$name/package/LICENSE")"
  done
  sed -n '2,$p' "$work/vega/package/LICENSE" | sed 's/^/  /; s/ *$//'
  cat <<'EOF'
-->
<html>
<head>
    {refresh_tag}
    <title>DVC Plot</title>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
EOF
  for entry in "${packages[@]}"; do
    read -r name _ _ <<<"$entry"
    printf '    <script>'
    cat "$work/$name/package/build/$name.min.js"
    printf '</script>\n'
  done
  cat <<'EOF'
</head>
<body>
    {plot_divs}
</body>
</html>
EOF
} >"$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out ($(wc -c <"$out") bytes)"
