"""The ``azureml`` target: a package as an Azure ML online endpoint (``modelport[azureml]``).

Importing this package imports azure-ai-ml only when a verb first talks to Azure.
"""

from __future__ import annotations

from modelport.deployers.azureml.config import AzureMLConfig
from modelport.deployers.azureml.deployer import AzureMLDeployer

__all__ = ["AzureMLConfig", "AzureMLDeployer"]
