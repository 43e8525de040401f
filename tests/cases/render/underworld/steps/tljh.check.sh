#!/bin/bash
set -euo pipefail
# Done when TLJH's installation finished (it links tljh-config last, after its units run the hub)...
[ -L /usr/bin/tljh-config ] && systemctl cat jupyterhub.service traefik.service >/dev/null 2>&1 || exit 1
# ... at the pinned version. (TLJH's package alone is installed early: a failed install has it too.)
installed=$(/opt/tljh/hub/bin/python3 -c 'import importlib.metadata as m; print(m.version("the-littlest-jupyterhub"))' 2>/dev/null) || exit 1
[ "$installed" = 2.0.0 ]
