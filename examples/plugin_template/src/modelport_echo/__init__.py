"""modelport-echo-target: an example deploy target for modelport.

A deployment is a directory holding a copy of the package and a small JSON record; predicting
loads the package in-process. Nothing runs in the background, which makes it the smallest
complete target: copy it and replace the bodies of the verbs with calls to your platform.
"""

from modelport_echo.deployer import EchoConfig, EchoDeployer

__all__ = ["EchoConfig", "EchoDeployer"]
