"""Running the node: the agent process, its command line and everything a technician touches.

``agent`` builds and runs the stages; ``cli`` is ``streetwatch-agent``; ``enroll`` and ``remote_config`` tie the
node to central (credentials, pushed configs); ``probe``/``metrics``/``health``/``status``/``sdnotify`` report
how it is doing (/metrics, /healthz, status.json, systemd watchdog); ``statefile`` writes small files crash-safe;
``assets`` installs models and clips; ``calibrate`` is the ground-plane tool.
"""
