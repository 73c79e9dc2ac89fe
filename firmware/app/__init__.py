# musket device application. Parts are built from their collaborators and started in app.main.

# The running parts by name ("log", "status", "counters", "usage", "readings", "uplink"),
# registered by app.main as it builds them. Parts never look each other up here: they are
# given what they need when built. Only what acts on the running device from outside does: a
# downlink command (app.uplink.commands: a config change goes to the part that owns the key,
# as app.config's schema names it) and the console's diagnostics (app.diag, which lets the
# whole application go).
parts = {}


def unload(*names):
    # Drops app modules that are done with (app.<name>, or app.<package>.<name>): from
    # sys.modules and from their package, so nothing holds them; a later import loads them again.
    import sys

    for name in names:
        full = "app." + name
        sys.modules.pop(full, None)
        cut = full.rfind(".")
        package = sys.modules.get(full[:cut])
        if package is not None and full[cut + 1:] in package.__dict__:
            delattr(package, full[cut + 1:])
