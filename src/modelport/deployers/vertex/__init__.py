"""The ``vertex`` target: a package as a Vertex AI endpoint (``modelport[vertex]``).

Importing this package imports google-cloud-aiplatform only when a verb first talks to Google.
"""

from __future__ import annotations

from modelport.deployers.vertex.config import VertexConfig
from modelport.deployers.vertex.deployer import VertexDeployer

__all__ = ["VertexConfig", "VertexDeployer"]
