"""Signed over-the-air updates (docs/ota.md): the key store (keys), the application image
(image), the delta (delta), the bundle's bytes (bundle) and a release made of them (release)."""
