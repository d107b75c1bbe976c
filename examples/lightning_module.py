"""ReffAKD in PyTorch Lightning: a LightningModule whose training loss is ``ReffAKDLoss``.

python examples/lightning_module.py            # needs: pip install 'reffakd[lightning]'
python examples/lightning_module.py --tiny     # a few seconds
"""

import sys

import torch
from torch import nn
from your_data import bar_images  # stands in for your data: uint8 or [0, 1] float images

import reffakd

try:
    import lightning as L
except ImportError:
    sys.exit("this example needs PyTorch Lightning: pip install 'reffakd[lightning]'")


class ReffAKDClassifier(L.LightningModule):
    """Your model, trained on ReffAKD's loss; the criterion is a submodule, so its soft-label
    table moves to the model's device with it."""

    def __init__(self, model: nn.Module, soft_labels: reffakd.SoftLabels, lr: float = 0.05):
        super().__init__()
        self.model = model
        self.criterion = reffakd.ReffAKDLoss(soft_labels)  # (1 - alpha) CE + alpha T² KL
        self.lr = lr

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.float() / 255)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = self.criterion(self(images), labels)
        self.log("train_loss", loss)
        self.log_dict({f"train_{k}": v for k, v in self.criterion.last_terms.items()})
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        accuracy = (self(images).argmax(dim=1) == labels).float().mean()
        self.log("val_acc", accuracy)

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            metrics = self.trainer.callback_metrics
            terms = ", ".join(f"{k} {float(v):.4f}" for k, v in self.criterion.last_terms.items())
            print(
                f"epoch {self.current_epoch + 1}: loss {float(metrics['train_loss']):.4f} "
                f"({terms}), val accuracy {float(metrics['val_acc']):.1%}"
            )

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


tiny = "--tiny" in sys.argv
images, labels = bar_images(500 if tiny else 5000)
val_images, val_labels = bar_images(200, seed=1)
L.seed_everything(0, verbose=False)
model = nn.Sequential(  # your model
    nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(4),
    nn.Flatten(), nn.Linear(32 * 16, 10),
)  # fmt: skip

soft_labels = reffakd.AESL.fit((images, labels), num_classes=10, epochs=2)
loaders = [
    torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=s)
    for x, y, s in ((images, labels, True), (val_images, val_labels, False))
]
trainer = L.Trainer(
    max_epochs=3 if tiny else 10,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)
trainer.fit(ReffAKDClassifier(model, soft_labels), *loaders)
