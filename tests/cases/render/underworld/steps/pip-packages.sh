#!/bin/bash
set -euo pipefail
# TLJH keeps its user environment owned by root and writable by nobody else, and restores both
# after every install into it; so does classimage.
fix_user_env() { chown -R 0:0 /opt/tljh/user && chmod -R o-w /opt/tljh/user; }
# Into TLJH's user environment, after the conda packages so pip sees what conda installed.
/opt/tljh/user/bin/pip install --no-input lavavu xvfbwrapper jupytext
fix_user_env
