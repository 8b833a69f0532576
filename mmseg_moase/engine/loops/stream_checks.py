"""Bad data: a model head for another class count than the stream's, and in
the middle of a stream labels that do not fit their images or the classes,
and images that do not load, named with their domain and file."""


class StreamDataError(ValueError):
    """Bad data met in the middle of a stream (the state is saved first)."""


class StreamChecksMixin:
    """The data checks of :class:`~.ctta_loop.CTTALoop`."""

    def _check_classes(self, model) -> None:
        head = getattr(model, 'decode_head', None)
        n_model = getattr(head, 'num_classes', None)
        for name, ds in self.datasets.items():
            n_data = len(ds.metainfo.get('classes', ()))
            if n_model is not None and n_data and n_model != n_data:
                raise ValueError(
                    f"class-count mismatch: domain '{name}' has {n_data} classes, "
                    f'the model head {n_model}. Use a checkpoint/config trained on '
                    'the same label set.')

    def _check_batch_labels(self, data_batch: dict, domain: str, dataset) -> None:
        samples = data_batch['data_samples']
        if samples and isinstance(samples[0], (list, tuple)):
            samples = samples[0]
        n_cls = len(dataset.metainfo.get('classes', ()))
        ignore = getattr(dataset, 'ignore_index', 255)
        for s in samples:
            if 'gt_sem_seg' not in s:
                continue
            gt = s.gt_sem_seg.data
            path = s.metainfo.get('seg_map_path', s.metainfo.get('img_path'))
            ori = tuple(s.metainfo.get('ori_shape', gt.shape[-2:]))
            if tuple(gt.shape[-2:]) != ori:
                raise StreamDataError(
                    f"domain '{domain}': label {path} is {tuple(gt.shape[-2:])} "
                    f'but its image is {ori} (H, W); labels must match images.')
            values = gt.unique()
            bad = values[(values >= n_cls) & (values != ignore)]
            if bad.numel():
                raise StreamDataError(
                    f"domain '{domain}': label {path} has values "
                    f'{bad.tolist()[:10]} outside 0..{n_cls - 1} and {ignore}; '
                    'use *_labelTrainIds.png files (cityscapesscripts '
                    'csCreateTrainIdLabelImgs makes them).')

    def _load_error(self, e: BaseException, name: str, dataset, done: int,
                    n_local: int) -> BaseException:
        """An exception from loading the next batch, as a
        :class:`StreamDataError` naming the domain and the image files (an
        unreadable image gets the bad label's treatment)."""
        if isinstance(e, StopIteration) or not n_local:
            return e
        batch = self.dataloader_cfg.get('batch_size', 1)
        paths = []
        for i in range(done, min(done + batch, len(dataset))):
            try:
                paths.append(dataset.get_data_info(i)['img_path'])
            except Exception:  # noqa: BLE001
                break
        text = str(e).strip()
        first = text.splitlines()[-1] if text else ''
        return StreamDataError(
            f"domain '{name}': loading image {done} of the pass failed "
            f'({type(e).__name__}: {first}); file(s): {paths}.')
