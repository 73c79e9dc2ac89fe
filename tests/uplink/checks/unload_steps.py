# Unloading a firmware module and loading it again (tests/uplink/test_bad_input_units.py), as
# the uplink does with its command module and the config schema after each command.
import sys

import app
from app import unload


def run():
    from app import config

    first = config
    unload("config")
    gone = "app.config" not in sys.modules and not hasattr(app, "config")
    from app import config

    print("UNLOAD", gone, config is not first, sys.modules.get("app.config") is config)
    sys.modules.pop("app.config")
    from app import config as again

    print("KEPT", again is config)
