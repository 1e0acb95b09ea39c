"""Evaluation: encoder metrics, language-model metrics (LMS, class probabilities), the decoder grid."""

from gradiend.evaluate.decoder import (
    DEFAULT_ALPHAS,
    DecoderResult,
    EvalConfig,
    evaluate_decoder,
    select_rewrites,
    write_decoder_results,
)
from gradiend.evaluate.encoder import EncoderResult, encoder_metrics, evaluate_encoder, write_encoder_results
from gradiend.evaluate.lm_metrics import LMSResult, class_probabilities, lms

__all__ = [
    "DEFAULT_ALPHAS",
    "DecoderResult",
    "EncoderResult",
    "EvalConfig",
    "LMSResult",
    "class_probabilities",
    "encoder_metrics",
    "evaluate_decoder",
    "evaluate_encoder",
    "lms",
    "select_rewrites",
    "write_decoder_results",
    "write_encoder_results",
]
