"""What the device-side checks share (store, config, counter): small, so that a check module
that imports it still fits its heap beside the firmware it checks."""


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def raises(exc_type, fn, *args):
    """Call fn(*args), expect exc_type, return its message."""
    try:
        fn(*args)
    except exc_type as e:
        return str(e)
    raise AssertionError(f"{fn.__name__}{args!r} did not raise {exc_type.__name__}")


def raw_read(path):
    with open(path, "rb") as f:
        return f.read()


def raw_write(path, data):
    """Write a file by hand, the way a cut or a damaged flash leaves it."""
    with open(path, "wb") as f:
        f.write(data)
