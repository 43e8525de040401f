"""TLJH STAND-IN: classimage's test stand-in for The Littlest JupyterHub. Not TLJH."""
