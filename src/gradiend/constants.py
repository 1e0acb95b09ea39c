"""Artifact file names and the on-disk format version: one place, so every stage agrees."""

FORMAT_VERSION = 1

# the pipeline's stages, in order (gradiend.pipeline runs them; the CLI offers them without importing it)
STAGES = ("data", "train", "encoder", "decoder", "rewrite", "report")

# run directory layout
CONFIG_FILE = "config.toml"
DATA_DIR = "data"
GRADIEND_DIR = "gradiend"
METRICS_DIR = "metrics"
PLOTS_DIR = "plots"
REWRITTEN_DIR = "rewritten"
REPORT_FILE = "report.html"
CHECKPOINT_DIR = "checkpoint"  # training state of an unfinished train stage (removed when it finishes)

# data stage
PAIRS_FILE = "pairs.parquet"
NEUTRAL_FILE = "neutral.parquet"
DATA_META_FILE = "data.json"

# GRADIEND directory
WEIGHTS_FILE = "model.safetensors"
GRADIEND_CONFIG_FILE = "config.json"

# metrics
TRAINING_LOG_FILE = "training.jsonl"
ENCODER_METRICS_FILE = "encoder.json"
ENCODINGS_FILE = "encodings.parquet"
DECODER_METRICS_FILE = "decoder.json"
DECODER_GRID_FILE = "decoder_grid.csv"
TIMINGS_FILE = "timings.json"  # {stage: seconds}
STAGES_FILE = "stages.json"  # {stage: {"fingerprint", "seconds"}} of finished stages
PROVENANCE_FILE = "provenance.json"  # versions of what produced the run
MEMORY_PLAN_FILE = "memory_plan.json"  # the training stage's memory plan per device (gradiend.memory)

# rewritten model
REWRITE_META_FILE = "gradiend_rewrite.json"

# the literal mask marker in the pairs table, independent of any tokenizer
MASK = "[MASK]"
CARD_FILE = "README.md"  # the model card of a GRADIEND or rewritten model directory (gradiend.cards)
