# Over-the-air updates: the signature check of an update bundle (ed25519.py, sha512.py).
