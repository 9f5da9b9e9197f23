"""Central's side of MQTT: the broker it may embed, the node credentials it writes, one client, ingest.

``broker`` runs the embedded broker for single-box installs; ``broker_auth`` writes Mosquitto's password and
ACL files for enrolled nodes; ``client`` is the one reconnecting MQTT client every central component uses
(topic handlers, QoS publishes, manual acks, counters); ``subscriber`` routes node events, status and
heartbeats from that client into ``ingest``, which stores events idempotently (or dead-letters them) and
acknowledges only after the commit.
"""
