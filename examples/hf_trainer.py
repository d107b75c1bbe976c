"""ReffAKD in a Hugging Face ``Trainer``: a subclass whose ``compute_loss`` is ``ReffAKDLoss``.

The model is a small ResNet built from its config (no download); any model whose outputs have
``logits`` works the same way, e.g. ``AutoModelForSequenceClassification.from_pretrained(...)``.

    python examples/hf_trainer.py            # needs: pip install 'reffakd[trainer]'
    python examples/hf_trainer.py --tiny     # a few seconds
"""

import sys
import tempfile

import torch
from your_data import bar_images  # stands in for your data: uint8 or [0, 1] float images

import reffakd

try:
    from transformers import ResNetConfig, ResNetForImageClassification, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback
except ImportError:
    sys.exit("this example needs transformers and accelerate: pip install 'reffakd[trainer]'")


class ReffAKDTrainer(Trainer):
    """A ``Trainer`` that trains on ReffAKD's loss instead of the model's own."""

    def __init__(self, *args, soft_labels: reffakd.SoftLabels, **kwargs):
        super().__init__(*args, **kwargs)
        self.criterion = reffakd.ReffAKDLoss(soft_labels)  # (1 - alpha) CE + alpha T² KL

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = self.criterion(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss


class Images(torch.utils.data.Dataset):
    """Rows as a Trainer's default collator stacks them: ``pixel_values`` and ``labels``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.pixels, self.labels = images.float() / 255, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixels[index], "labels": self.labels[index]}


tiny = "--tiny" in sys.argv
images, labels = bar_images(500 if tiny else 5000)
test_images, test_labels = bar_images(200, seed=1)
torch.manual_seed(0)
config = ResNetConfig(
    num_channels=1, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_labels=10
)
model = ResNetForImageClassification(config)

soft_labels = reffakd.AESL.fit((images, labels), num_classes=10, epochs=2)
with tempfile.TemporaryDirectory() as output_dir:
    arguments = TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=3 if tiny else 10,
        per_device_train_batch_size=32,
        learning_rate=5e-3,
        save_strategy="no",
        logging_strategy="epoch",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    trainer = ReffAKDTrainer(
        model=model, args=arguments, train_dataset=Images(images, labels), soft_labels=soft_labels
    )
    trainer.remove_callback(PrinterCallback)  # the epochs are printed below
    trainer.train()
for record in trainer.state.log_history:
    if "loss" in record:
        print(f"epoch {round(record['epoch'])}: loss {record['loss']:.4f}")

model.eval()
with torch.no_grad():
    logits = model(pixel_values=Images(test_images, test_labels).pixels).logits
print(f"test accuracy {(logits.argmax(dim=1) == test_labels).float().mean().item():.1%}")
