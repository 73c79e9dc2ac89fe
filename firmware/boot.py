# Runs on every boot, before main.py, and after a soft reset from the raw REPL.
# Kept minimal so that tools reaching the raw REPL always find a working device.
