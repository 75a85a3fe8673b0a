"""Operations: the process around the server.

Owns the settings (CLI flags > ``ORTSERVE_*`` environment > TOML file > defaults), the app
lifecycle (``App``: startup -> main_loop -> shutdown, the composition root that builds every
layer), the ``--workers`` supervisor, logging (text or JSON lines, the access log hook), and the
security parts built from the settings (``security``: TLS files, auth policy, audit log; ``guard``:
secure defaults; ``audit``/``auditing``: the hash-chained audit log and its chain link;
``metrics_http``: the metrics endpoint, HTTPS with ``--metrics-tls``; ``metrics_auth``: who may
read it, with the auth file's principals; ``security_cli``:
``ortserve auth`` / ``ortserve audit``).

May import every other layer; nothing imports it but ``ortserve.__main__``.
"""
