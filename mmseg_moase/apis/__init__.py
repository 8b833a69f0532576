from .ctta import build_ctta_runner, prepare_ctta_config, run_ctta

__all__ = ['build_ctta_runner', 'prepare_ctta_config', 'run_ctta']
