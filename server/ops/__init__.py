"""Operations: the process around the server.

Owns the settings (CLI flags > ``ORTSERVE_*`` environment > TOML file > defaults), the app
lifecycle (``App``: startup -> main_loop -> shutdown, the composition root that builds every
layer), the ``--workers`` supervisor, and logging (text or JSON lines, the access log hook).

May import every other layer; nothing imports it but ``ortserve.__main__``.
"""
