from .safe_load import (checkpoint_safe_globals,
                        register_checkpoint_safe_globals)

__all__ = ['checkpoint_safe_globals', 'register_checkpoint_safe_globals']
