"""What every MiT-with-adapters backbone shares, given its ``adapters()``."""
from typing import Dict, List, Tuple

import torch.nn as nn


class AdapterBackboneMixin:
    """Initialisation and parameter counts of a backbone whose subclass lists
    its adapters with ``adapters() -> [(name, module)]`` (each module has
    ``reset_parameters()``). Put it before the backbone class in the bases."""

    def adapters(self) -> List[Tuple[str, nn.Module]]:
        raise NotImplementedError

    def init_weights(self) -> None:
        """Stock initialisation, then fresh (zero-output) adapters."""
        super().init_weights()
        for _, adapter in self.adapters():
            adapter.reset_parameters()

    def adapter_parameter_count(self) -> Dict[str, int]:
        """Parameter counts: ``adapters`` and the stock ``backbone`` without them."""
        n_adapter = sum(p.numel() for _, a in self.adapters()
                        for p in a.parameters())
        n_all = sum(p.numel() for p in self.parameters())
        return dict(adapters=n_adapter, backbone=n_all - n_adapter)
