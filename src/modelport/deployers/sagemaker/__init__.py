"""The ``sagemaker`` target: a package as an AWS SageMaker endpoint (``modelport[sagemaker]``).

Importing this package imports boto3 only when a verb first talks to AWS.
"""

from __future__ import annotations

from modelport.deployers.sagemaker.config import SageMakerConfig, Traffic
from modelport.deployers.sagemaker.deployer import SageMakerDeployer

__all__ = ["SageMakerConfig", "SageMakerDeployer", "Traffic"]
