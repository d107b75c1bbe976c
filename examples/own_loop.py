"""Your CNN on your tensors: ReffAKD soft labels and loss inside a plain PyTorch loop.

python examples/own_loop.py            # 10 epochs on 5,000 synthetic images
python examples/own_loop.py --tiny     # a few seconds
"""

import sys

import torch
from torch import nn
from your_data import bar_images  # stands in for your data: uint8 or [0, 1] float images

import reffakd

tiny = "--tiny" in sys.argv
images, labels = bar_images(500 if tiny else 5000)
test_images, test_labels = bar_images(200, seed=1)
torch.manual_seed(0)
model = nn.Sequential(  # your model
    nn.Conv2d(1, 16, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1),
    nn.ReLU(),
    nn.AdaptiveMaxPool2d(4),
    nn.Flatten(),
    nn.Linear(32 * 16, 10),
)

soft_labels = reffakd.AESL.fit((images, labels), num_classes=10, epochs=2)
criterion = reffakd.ReffAKDLoss(soft_labels)  # (1 - alpha) CE + alpha T² KL(AESL[y] || student)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
dataset = torch.utils.data.TensorDataset(images, labels)
for epoch in range(1, 4 if tiny else 11):
    for x, y in torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True):
        loss = criterion(model(x.float() / 255), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    terms = ", ".join(f"{name} {value:.4f}" for name, value in criterion.last_terms.items())
    print(f"epoch {epoch}: loss {loss.item():.4f} ({terms})")

with torch.no_grad():
    predicted = model(test_images.float() / 255).argmax(dim=1)
print(f"test accuracy {(predicted == test_labels).float().mean().item():.1%}")
