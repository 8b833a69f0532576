"""Convert an NVlabs SegFormer checkpoint to mmseg 1.x names.

    python tools/convert_segformer_checkpoint.py SRC DST [--config CONFIG]

SRC is an original release file such as ``segformer.b5.1024x1024.city.160k.pth``
(weights under ``state_dict`` or at the top level, ``module.`` prefixes allowed).
DST gets ``dict(state_dict=..., meta=...)`` with mmseg 1.x MiT keys, the head keys
of ``SegformerOriginalHead`` and ``meta['dataset_meta']`` (classes and palette).

With ``--config`` the file is first checked against the config's model (MiT
variant, head type and width, class count), then the config's model is built and
the converted weights must load into it with only ``.adapter.`` keys missing.
Nothing is written when a check fails. Input files are read with
``torch.load(weights_only=True)``.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmseg_moase  # noqa: E402,F401  (registers models; safe-load allowlist)
import mmseg_moase.models.decode_heads  # noqa: E402,F401  (SegformerOriginalHead)
from mmseg_moase.models.checkpoint_convert import (  # noqa: E402
    check_converted_fits_model, convert_nvlabs_segformer, mit_arch)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='Convert an NVlabs SegFormer checkpoint (mmseg 0.x layout) '
        'to mmseg 1.x names (MixVisionTransformer + SegformerOriginalHead)')
    parser.add_argument('src', help='original checkpoint (.pth)')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument(
        '--config',
        help='model config to check against: its model is built and the '
        'converted weights must load into it (only .adapter. keys may be '
        'missing)')
    return parser.parse_args(argv)


def convert(src: str, dst: str, config: Optional[str] = None) -> dict:
    """Convert ``src`` into ``dst``, checking it against ``config`` if given.

    Args:
        src (str): The NVlabs checkpoint.
        dst (str): Output path (folders are created).
        config (str, optional): A config whose ``model`` must take the weights.

    Returns:
        dict: The converted checkpoint (``state_dict``, ``meta``).

    Raises:
        FileNotFoundError: ``src`` or ``config`` does not exist.
        ValueError: the file cannot be read safely, is not an NVlabs SegFormer
            checkpoint, or does not fit the config's model.
    """
    if not osp.isfile(src):
        raise FileNotFoundError(f'checkpoint not found: {src}')
    if osp.exists(dst) and osp.samefile(src, dst):
        raise ValueError(f'refusing to overwrite the source file {src}')
    try:
        ckpt = torch.load(src, map_location='cpu', weights_only=True)
    except Exception as e:  # pickle.UnpicklingError, RuntimeError, ...
        raise ValueError(
            f'{src}: cannot be read with torch.load(weights_only=True): {e}'
        ) from e

    cfg = model = None
    if config is not None:
        if not osp.isfile(config):
            raise FileNotFoundError(f'config not found: {config}')
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmseg.registry import MODELS
        cfg = Config.fromfile(config)
        init_default_scope(cfg.get('default_scope', 'mmseg'))
    out = convert_nvlabs_segformer(ckpt, target=cfg)
    arch = mit_arch(out['state_dict'])
    num_classes = int(out['state_dict']['decode_head.conv_seg.weight'].shape[0])
    print(f'{src}: NVlabs SegFormer, variant: {arch.variant}, stage widths '
          f'{list(arch.widths)}, depths {list(arch.depths)}, '
          f'classes: {num_classes}')

    if cfg is not None:
        model = MODELS.build(cfg.model)
        missing = check_converted_fits_model(out['state_dict'], model)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(out, dst)
    print(f'wrote {dst} ({len(out["state_dict"])} tensors)')

    if model is not None:
        from mmseg_moase.models.checkpoints.loading import \
            load_source_checkpoint
        load_source_checkpoint(model, dst)  # the loader the CTTA runs use
        print(f'{dst} loads into the model of {config} '
              f'({type(model).__name__} with {type(model.backbone).__name__} '
              f'and {type(model.decode_head).__name__}); '
              f'{len(missing)} .adapter. keys are left to their initialisation')
    return out


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 refused)."""
    args = parse_args(argv)
    try:
        convert(args.src, args.dst, args.config)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
