"""TLJH STAND-IN: TLJH's documented layout."""

import os

PREFIX = os.environ.get("TLJH_INSTALL_PREFIX", "/opt/tljh")
HUB = os.path.join(PREFIX, "hub")
USER = os.path.join(PREFIX, "user")
CONFIG = os.path.join(PREFIX, "config")
CONFIG_YAML = os.path.join(CONFIG, "config.yaml")
CONFIG_D = os.path.join(CONFIG, "jupyterhub_config.d")
STATE = os.path.join(PREFIX, "state")
RECORDS = os.path.join(PREFIX, "stand-in")  # what the stand-in records for the tests
HUB_CONFIG = os.path.join(RECORDS, "jupyterhub_config.py")
ROUTES = os.path.join(STATE, "rules", "routes.json")
SCHEMA = os.path.join(os.path.dirname(__file__), "config.schema.json")
