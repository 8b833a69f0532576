from .ctta_loop import CTTALoop, StreamDataError

__all__ = ['CTTALoop', 'StreamDataError']
