"""A small PyTorch CNN trained on scikit-learn's 8x8 digits, exported to ONNX with a dynamic batch.

Run: python examples/frameworks/pytorch_cnn.py [OUT_DIR]   (needs modelport[torch] and torch; the
CPU build is enough). The data set ships with scikit-learn.
"""

from __future__ import annotations

import numpy as np
import torch
from report import pack_and_compare
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(self.conv(image), 2)
        return torch.softmax(self.head(x.flatten(1)), dim=-1)


images, digits = load_digits(return_X_y=True)
images = (images / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
x_train, x_test, y_train, _ = train_test_split(images, digits, random_state=0)

torch.manual_seed(0)
model = DigitsCNN()
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
for _ in range(30):  # a few full-batch steps: enough to be well above chance
    optimizer.zero_grad()
    loss = nn.functional.nll_loss(torch.log(model(x) + 1e-9), y)
    loss.backward()
    optimizer.step()
model.eval()


def original(rows: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {"output": model(torch.from_numpy(rows)).numpy()}


pack_and_compare(model, "digits-cnn", example=x_test[:16], rows=x_test, original=original)
