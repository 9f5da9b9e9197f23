"""streetwatch central: the server that ingests the nodes' events, steers the fleet and serves the review.

``app`` wires everything (``context.Central`` is what one process shares); ``mqtt_client`` is the broker
connection that ``mqtt`` (ingest) and ``fleet`` build on; ``api`` is the HTTP layer (JSON API and pages),
``db`` the database, and the flat modules are the domain pieces (ingest, evidence, review, users, audit).
"""

__version__ = "0.1.0"
