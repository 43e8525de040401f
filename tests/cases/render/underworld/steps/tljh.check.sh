#!/bin/bash
# A classimage provisioning step, run by classimage-provision. Safe to run again.
set -euo pipefail
# Done when TLJH is installed at the pinned version.
installed=$(/opt/tljh/hub/bin/python3 -c 'import importlib.metadata as m; print(m.version("the-littlest-jupyterhub"))' 2>/dev/null) || exit 1
[ "$installed" = 2.0.0 ]
