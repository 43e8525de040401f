"""classimage: one course spec in, a ready classroom JupyterHub server out."""

__version__ = "0.1.0"
