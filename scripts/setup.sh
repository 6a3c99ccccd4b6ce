#!/usr/bin/env bash
# Installs everything Flux needs to build, run and test on Debian 12, from nothing.
# Idempotent; runs as root (or with sudo available). V8 comes from Debian's libnode108 /
# libnode-dev: installed with apt where apt allows it, otherwise (a nodejs package from another
# source blocks libnode-dev) downloaded and unpacked into third_party/v8/, which CMake finds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"

packages=(
  build-essential g++ cmake ninja-build pkg-config git curl ca-certificates
  libboost-dev libssl-dev libpq-dev postgresql-15 postgresql-server-dev-15
  esbuild nodejs npm
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev libfmt-dev libsimdjson-dev
  nlohmann-json3-dev libncurses-dev libgoogle-perftools-dev wrk
  libbrotli1 libc-ares2 libicu72 libnghttp2-14 libuv1
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A preinstalled nodejs from elsewhere provides node and npm itself; Debian's npm would conflict.
if command -v npm >/dev/null; then
  missing=("${missing[@]/npm}"); missing=("${missing[@]/nodejs}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# V8 (libnode108 + libnode-dev, Node 18's V8 10.2).
v8_header=usr/include/nodejs/deps/v8/include/v8.h
if [ -f "/$v8_header" ] && [ -e /usr/lib/x86_64-linux-gnu/libnode.so ]; then
  echo "setup: V8 from the system libnode-dev"
elif [ -f "$root/third_party/v8/$v8_header" ]; then
  echo "setup: V8 already unpacked in third_party/v8"
elif DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libnode-dev >/dev/null 2>&1; then
  echo "setup: installed libnode-dev"
else
  echo "setup: apt refuses libnode-dev here; unpacking libnode108 + libnode-dev into third_party/v8"
  tmp=$(mktemp -d); chmod 755 "$tmp"
  (cd "$tmp" && apt-get download libnode108 libnode-dev >/dev/null 2>&1)
  mkdir -p "$root/third_party/v8"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$root/third_party/v8"; done
  rm -rf "$tmp"
fi

# The runtime's own JS dependencies (bundled into the binary at build time).
if [ ! -d "$root/js/node_modules" ] || [ "$root/js/package-lock.json" -nt "$root/js/node_modules" ]; then
  (cd "$root/js" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: done"
