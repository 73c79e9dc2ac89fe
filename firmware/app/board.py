# The board this firmware runs on, as `musket build` wrote it to /board.json from boards/.
# Pins, modem family and sensors come from here: no pin number is written in firmware code.
import json

from app.errors import FirmwareError

PATH = "/board.json"


class BoardError(FirmwareError):
    pass


def load(path=PATH):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        raise BoardError("no board definition at %s" % path)
    except ValueError:
        raise BoardError("board definition at %s is not valid JSON" % path)
