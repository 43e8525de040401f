#!/bin/bash
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# On a fresh droplet cloud-init and unattended-upgrades may hold apt's locks for a while, and a
# mirror may blink: wait for the locks and retry the index download.
apt_get() { apt-get -o DPkg::Lock::Timeout=900 -o Dpkg::Options::=--force-confold "$@"; }
for _ in $(seq 10); do
  apt_get update && break
  sleep 15
done
apt_get install --yes python3 python3-dev python3-venv git curl ca-certificates iptables ufw iproute2 e2fsprogs build-essential libx11-dev libpng-dev libtiff-dev libgl1-mesa-dev libglu1-mesa-dev freeglut3-dev mesa-common-dev xvfb
