"""The built-in synthetic city -> weather benchmark's driver (stages and
report), used by the tools beside it; see ``tools/run_synthetic_benchmark.py``."""
from .oracle import ORACLE_CONFIG, train_oracle
from .report import (ORACLE, aggregate, plot_stream, telemetry_summary,
                     telemetry_table)
from .stages import (ADAPTING, CONDITIONS, DEFAULT_METHODS, DOMAINS,
                     METHOD_CONFIGS, NO_WARMUP, PROTOCOLS, VARIANTS,
                     method_spec, needs_vida_warmup, run_method,
                     run_synthetic_benchmark, source_model_dir,
                     threads_per_job)
from .training import (CONFIG_DIR, ROOT, SOURCE_CONFIG, VIDA_WARMUP_CONFIG,
                       class_balance_weights, train_source, warmup_vida)

__all__ = [
    'ADAPTING', 'CONDITIONS', 'CONFIG_DIR', 'DEFAULT_METHODS', 'DOMAINS',
    'METHOD_CONFIGS', 'NO_WARMUP',
    'ORACLE', 'ORACLE_CONFIG', 'PROTOCOLS', 'ROOT', 'SOURCE_CONFIG',
    'VARIANTS', 'VIDA_WARMUP_CONFIG', 'aggregate', 'class_balance_weights',
    'method_spec', 'needs_vida_warmup', 'plot_stream', 'run_method',
    'run_synthetic_benchmark', 'source_model_dir', 'threads_per_job',
    'telemetry_summary', 'telemetry_table', 'train_oracle', 'train_source',
    'warmup_vida']
