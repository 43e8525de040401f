#!/bin/bash
set -euo pipefail
# Done when every package is installed.
for package in python3 python3-dev python3-venv git curl ca-certificates iptables ufw iproute2 e2fsprogs build-essential libx11-dev libpng-dev libtiff-dev libgl1-mesa-dev libglu1-mesa-dev freeglut3-dev mesa-common-dev xvfb; do
  # shellcheck disable=SC2016  # dpkg-query's own ${field} syntax, not the shell's
  status=$(dpkg-query --show --showformat='${db:Status-Abbrev}' "$package" 2>/dev/null) || exit 1
  [ "$status" = "ii " ] || exit 1
done
