"""DP-SGD baseline: the pair's downstream classifier (small CNN for MNIST-like pairs, ResNet9 for CIFAR-like ones)
trained directly on the private data with DP-SGD. It yields a classifier, so it is scored by accuracy, not FID."""
import torch

import dpbench
from dpbench.dp_classifier import TrainedClassifier, train_classifier_dp
from dpbench.models.classifiers import build_classifier, fit_classifier
from dpbench.privacy.accountant import ACCOUNTANTS
from dpbench.privacy.engine import DPConfig

PRESETS = {
    "smoke": dict(steps=5, batch_size=64, lr=0.5, max_grad_norm=1.0, accountant="rdp", public_init=False,
                  public_init_epochs=1),
    # dpbench's CPU-sized choice: ~19 epochs of 4,000 private digits at expected batch 512.
    "default": dict(steps=150, batch_size=512, lr=0.5, max_grad_norm=1.0, accountant="rdp", public_init=False,
                    public_init_epochs=5),
    # Large batches and many steps are what DP-SGD needs (De et al. 2022 use batch 4096, C = 1, momentum SGD);
    # lr 2 and 2,500 steps are dpbench's choice.
    "paper": dict(steps=2500, batch_size=4096, lr=2.0, max_grad_norm=1.0, accountant="rdp", public_init=False,
                  public_init_epochs=10),
}


class DPSGDClassifier(dpbench.Method):
    name = "dp-sgd"
    description = "Baseline: the downstream classifier trained directly on private data with DP-SGD"
    produces = "classifier"
    reference = "Abadi et al. 2016, Deep Learning with Differential Privacy; De et al. 2022 (large-batch DP-SGD)"

    def configure(self, preset, pair):
        return dict(PRESETS[preset])

    def validate(self, config):
        if config["accountant"] not in ACCOUNTANTS:
            raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got '{config['accountant']}'")
        if int(config["steps"]) < 1 or int(config["batch_size"]) < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if float(config["lr"]) <= 0 or float(config["max_grad_norm"]) <= 0:
            raise ValueError("lr and max_grad_norm must be > 0")

    def train(self, ctx, config):
        torch.manual_seed(ctx.seed)
        model = build_classifier(ctx.pair.classifier, ctx.pair.channels, ctx.pair.image_size, ctx.pair.num_classes)
        if config["public_init"]:  # optional warm start on the public split (labels must share the pair's classes)
            public = ctx.data.public_train
            if int(public.labels.max()) >= ctx.pair.num_classes:
                raise ValueError(f"public_init: the public labels of {ctx.pair.name} are not its classes")
            with ctx.stage("pretrain"):
                fit_classifier(model, public.images, public.labels, epochs=int(config["public_init_epochs"]),
                               batch_size=128, lr=1e-3, device=ctx.device, seed=ctx.seed, progress=ctx.progress)
        total = sum(p.numel() for p in model.parameters())
        dp = DPConfig(epsilon=ctx.epsilon, delta=ctx.delta, expected_batch_size=int(config["batch_size"]),
                      steps=int(config["steps"]), max_grad_norm=float(config["max_grad_norm"]),
                      accountant=config["accountant"])
        with ctx.stage("finetune"):
            ledger = train_classifier_dp(model, ctx.data.private_train, dp, lr=float(config["lr"]), device=ctx.device,
                                         seed=ctx.seed, progress=ctx.progress)
        return dpbench.MethodResult(artifact=TrainedClassifier(model, ctx.device), ledger=ledger,
                                    trainable_parameters=total, total_parameters=total)


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(DPSGDClassifier())
