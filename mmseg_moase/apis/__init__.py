from .ctta import prepare_ctta_config, run_ctta

__all__ = ['prepare_ctta_config', 'run_ctta']
