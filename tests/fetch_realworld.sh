#!/usr/bin/env bash
# Fetch the public inputs the slow real-world tests read (nothing here is committed):
#   DEST/dbc/opendbc   opendbc's DBCs (PyPI wheel, MIT)
#   DEST/dbc/cantools  cantools' test DBCs (PyPI sdist, MIT)
#   DEST/pycan         python-can 4.6.1's test logs (PyPI sdist, LGPL-3.0)
# Offline or on any failure it says so and exits 0: the tests then skip with a reason.
set -u
dest=${1:-.realworld}
py=${2:-python3}
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch() {  # fetch NAME PIP-ARGS...
  local name=$1; shift
  if ! "$py" -m pip download --quiet --no-deps -d "$tmp/$name" "$@" >/dev/null 2>&1; then
    echo "realworld: could not download $name (offline?); its tests will skip"
    return 1
  fi
}
if [ ! -d "$dest/dbc/opendbc" ] && fetch opendbc opendbc==0.3.1; then
  mkdir -p "$dest/dbc/opendbc" "$tmp/x"
  "$py" -m zipfile -e "$tmp"/opendbc/*.whl "$tmp/x/opendbc"
  cp -r "$tmp"/x/opendbc/opendbc/dbc/. "$dest/dbc/opendbc/"
fi
if [ ! -d "$dest/dbc/cantools" ] && fetch cantools --no-binary :all: cantools==45.1.0; then
  mkdir -p "$dest/dbc/cantools"
  tar -xzf "$tmp"/cantools/*.tar.gz -C "$tmp" && cp "$tmp"/cantools-*/tests/files/dbc/* "$dest/dbc/cantools/"
fi
if [ ! -d "$dest/pycan" ] && fetch python-can --no-binary :all: python-can==4.6.1; then
  mkdir -p "$dest/pycan"
  tar -xzf "$tmp"/python-can/*.tar.gz -C "$tmp" && cp -r "$tmp"/python_can-*/test/data/. "$dest/pycan/"
fi
echo "realworld: $(find "$dest/dbc/opendbc" -name "*.dbc" 2>/dev/null | wc -l) opendbc DBCs, $(ls "$dest/dbc/cantools" 2>/dev/null | wc -l) cantools DBCs, $(ls "$dest/pycan" 2>/dev/null | wc -l) python-can logs in $dest"
exit 0
