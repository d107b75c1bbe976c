"""Your CNN on your tensors: ReffAKD soft labels and loss inside a plain PyTorch loop.

    python examples/own_loop.py            # 10 epochs on 6,000 synthetic images
    python examples/own_loop.py --tiny     # a few seconds
"""

import sys

import torch
from torch import nn

import reffakd

tiny = "--tiny" in sys.argv
n, epochs = (600, 3) if tiny else (6000, 10)
torch.manual_seed(0)

# Your data: uint8 (or [0, 1] float) images (N, C, H, W) and integer labels. Here: 10 classes
# of noisy 28x28 images, class k a bright bar at height 2 + 2k.
labels = torch.arange(n) % 10
images = torch.randint(0, 100, (n, 1, 28, 28), dtype=torch.uint8)
for k in range(10):
    images[labels == k, :, 2 + 2 * k : 4 + 2 * k, 4:24] = 220
train, test = slice(0, n * 5 // 6), slice(n * 5 // 6, n)

model = nn.Sequential(  # your model
    nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(4),
    nn.Flatten(), nn.Linear(32 * 16, 10),
)

soft_labels = reffakd.AESL.fit((images[train], labels[train]), num_classes=10, epochs=2)
criterion = reffakd.ReffAKDLoss(soft_labels)  # (1 - alpha) CE + alpha T² KL(AESL[y] || student)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
batches = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(images[train], labels[train]), batch_size=64, shuffle=True
)
for epoch in range(1, epochs + 1):
    for x, y in batches:
        loss = criterion(model(x.float() / 255), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    terms = ", ".join(f"{name} {value:.4f}" for name, value in criterion.last_terms.items())
    print(f"epoch {epoch}: loss {loss.item():.4f} ({terms})")

with torch.no_grad():
    predicted = model(images[test].float() / 255).argmax(dim=1)
print(f"test accuracy {(predicted == labels[test]).float().mean().item():.1%}")
