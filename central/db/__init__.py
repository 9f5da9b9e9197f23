"""Database layer: ORM models, engine/session factory and programmatic migrations.

``models`` holds the core tables and ``wards`` the officers' workspace (wards, cameras, history, cases) on the
same metadata; both are imported here so every mapper exists before the first query, whichever module a caller
imports first.
"""

from central.db import models as models
from central.db import wards as wards
