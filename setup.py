"""Installs NAR: neural action representations across animals."""

import setuptools

NWB_REQUIREMENTS = ["pynwb>=3,<5", "ndx-pose>=0.2,<0.5"]

setuptools.setup(
    name="nar",
    version="0.1.0",
    description=(
        "Contrastive neural action representations that generalise across animals "
        "(Gunel et al., cross-animal pose swapping) in JAX/Flax."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["nar", "nar.*", "experiments", "experiments.*", "data_prep", "data_prep.*"]),
    package_data={"nar": ["assets/*.npz", "assets/*.csv", "assets/*.md"]},
    install_requires=[
        "jax>=0.10,<0.13",
        "flax>=0.12,<0.13",
        "optax>=0.2.5,<0.3",
        "orbax-checkpoint>=0.11,<0.13",
        "tensorflow-datasets>=4.9.9,<4.10",
        "array-record>=0.8,<0.9",
        "grain>=0.2.12,<0.3",
        "importlib_resources>=6",
        "absl-py>=2,<3",
        "ml-collections>=1,<2",
        "numpy>=2,<3",
        "pandas>=2.2,<4",
        "scipy>=1.13,<2",
        "scikit-learn>=1.6,<2",
        "matplotlib>=3.9,<4",
        "tqdm>=4.66,<5",
        "tifffile>=2024.1",
        "h5py>=3.10,<4",
        "tensorboardX>=2.6,<3",
    ],
    extras_require={
        # Reading and writing NWB files (data_prep.nwb).
        "nwb": NWB_REQUIREMENTS,
        "test": ["pytest>=8,<10", "pytest-xdist>=3.6,<4"] + NWB_REQUIREMENTS,
        # Accelerator builds of jaxlib; the CPU build comes with the base install.
        "cuda": ["jax[cuda12]>=0.10,<0.13"],
        "tpu": ["jax[tpu]>=0.10,<0.13"],
    },
)
