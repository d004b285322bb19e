"""Published numbers from the seed papers, shown on the leaderboard as marked reference rows.

Only numbers checked against the paper's own text are listed; each names its source and setting.
They come from the papers' settings (full datasets, GPU-scale training), not from dpbench runs.
"""
import dpbench

PUBLISHED = (
    dpbench.PublishedResult(
        # Dockhorn et al., "Differentially Private Diffusion Models", TMLR 2023 (arXiv:2210.09929), abstract.
        name="dpdm-mnist-eps10", method="dp-diffusion (DPDM, published)", private_dataset="MNIST",
        pairs=("svhn-mnist",), epsilon=10.0, delta=1e-5, metrics={"fid": 5.01, "accuracy": 0.981},
        source="Dockhorn et al. 2023, DPDM (TMLR), abstract: MNIST FID 5.01, CNN accuracy 98.1% at (10, 1e-5)",
        setting="full MNIST (60k), trained from scratch without public data, 28x28",
    ),
)


@dpbench.hookimpl
def dpbench_published_results(register):
    for result in PUBLISHED:
        register(result)
