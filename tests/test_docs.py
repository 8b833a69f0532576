"""The documentation holds: links resolve, named configs exist, README stays
short, nothing points at documents outside the repository, and every default
the docs state equals what the configs resolve to."""
import ast
import glob
import inspect
import math
import os.path as osp
import re
import subprocess
from itertools import product
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
DOC_FILES = [README] + sorted((ROOT / 'docs').glob('*.md'))
METHOD_DOC = ROOT / 'docs' / 'method.md'

FENCE = re.compile(r'^(```|~~~)')
LINK = re.compile(r'\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
INLINE_CODE = re.compile(r'`[^`\n]*`')
CONFIG_PATH = re.compile(r'configs/[\w{*][\w\-./{},*]*?\.py')


# ------------------------------------------------------------------ markdown
def split_code(text: str) -> Tuple[List[str], List[str]]:
    """(prose lines, code lines) of a markdown text: fenced blocks apart."""
    prose, code, in_code = [], [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            in_code = not in_code
            continue
        (code if in_code else prose).append(line)
    return prose, code


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: link targets and emphasis dropped,
    lower case, punctuation other than ``-`` and ``_`` removed, spaces to ``-``."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading.strip())
    text = text.lower()
    text = ''.join(c for c in text if c.isalnum() or c in '-_ ')
    return text.replace(' ', '-')


def anchors(path: Path) -> set:
    prose, _ = split_code(path.read_text(encoding='utf-8'))
    seen: Dict[str, int] = {}
    out = set()
    for line in prose:
        m = re.match(r'^(#{1,6})\s+(.*?)\s*#*\s*$', line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f'{slug}-{n}')
    return out


def relative_links(path: Path) -> List[str]:
    prose, _ = split_code(path.read_text(encoding='utf-8'))
    links = []
    for line in prose:
        for target in LINK.findall(INLINE_CODE.sub('', line)):
            if re.match(r'^[a-z][a-z0-9+.-]*:', target) or target.startswith('//'):
                continue  # http(s):, mailto:, ...
            links.append(target)
    return links


def expand_braces(pattern: str) -> List[str]:
    parts = re.split(r'(\{[^{}]*\})', pattern)
    choices = [p[1:-1].split(',') if p.startswith('{') else [p] for p in parts]
    return [''.join(c) for c in product(*choices)]


def doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --------------------------------------------------------------------- links
@pytest.mark.parametrize('doc', DOC_FILES, ids=doc_id)
def test_relative_links_resolve(doc):
    bad = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition('#')
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            bad.append(f'{target}: no file {dest}')
            continue
        if anchor:
            if dest.suffix != '.md':
                bad.append(f'{target}: an anchor into a non-markdown file')
            elif anchor not in anchors(dest):
                bad.append(f'{target}: no heading with the anchor #{anchor} '
                           f'in {dest.relative_to(ROOT)}')
    assert not bad, f'{doc_id(doc)}:\n' + '\n'.join(bad)


@pytest.mark.parametrize('doc', DOC_FILES, ids=doc_id)
def test_named_configs_exist(doc):
    bad = []
    for pattern in sorted(set(CONFIG_PATH.findall(doc.read_text('utf-8')))):
        for path in expand_braces(pattern):
            if not glob.glob(str(ROOT / path)):
                bad.append(path if path == pattern else f'{path} (from {pattern})')
    assert not bad, f'{doc_id(doc)} names configs that do not exist:\n' + \
        '\n'.join(bad)


def test_readme_is_short():
    n = len(README.read_text('utf-8').splitlines())
    assert n < 300, f'README.md has {n} lines; move detail into docs/'


def test_slug_rule():
    assert github_slug('Reproducing Cityscapes -> ACDC') == \
        'reproducing-cityscapes---acdc'
    assert github_slug("The long protocol: ACDC's length (400 images, 4800 "
                       'steps)') == 'the-long-protocol-acdcs-length-400-images-4800-steps'
    assert github_slug('The legacy conditions (before generator 2.2; '
                       '`--conditions legacy`)') == \
        'the-legacy-conditions-before-generator-22---conditions-legacy'


# ------------------------------------------------ documents users do not have
def project_files() -> List[Path]:
    where = ['mmseg_moase', 'configs', 'tools', 'tests', 'docs', 'README.md']
    try:
        out = subprocess.run(
            ['git', 'ls-files', '--cached', '--others', '--exclude-standard',
             '--', *where], cwd=ROOT, capture_output=True, text=True,
            check=True).stdout.split('\n')
        files = [ROOT / p for p in out if p]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        files = [p for w in where for p in
                 ([ROOT / w] if (ROOT / w).is_file() else (ROOT / w).rglob('*'))]
    return [p for p in files if p.is_file()]


def test_no_reference_to_documents_outside_the_repository():
    # Built from pieces, so that this file does not name them itself.
    forbidden = ['shared' + '/docs', 'MOASE' + '_SPEC', 'PROTOCOL' + '.md',
                 'spec' + ' section']
    bad = []
    for path in project_files():
        text = path.read_bytes().decode('utf-8', errors='ignore')
        for i, line in enumerate(text.splitlines(), 1):
            for word in forbidden:
                # Lower-case words in any case, the others as written.
                hit = (word in line.lower()) if word.islower() else (word in line)
                if hit:
                    bad.append(f'{path.relative_to(ROOT)}:{i}: {word!r}')
    assert not bad, 'say the thing itself, not where an outside file says it:\n' + \
        '\n'.join(bad)


# ------------------------------------------------------------------ defaults
def table_rows(text: str, first_header: str) -> List[Dict[str, str]]:
    """The rows of the markdown table whose header starts with
    ``first_header``, as header -> cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith(f'| {first_header} |'))
    header = [c.strip() for c in lines[start].strip('|').split('|')]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            break
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        rows.append(dict(zip(header, cells)))
    return rows


NUMBER = re.compile(r'(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?')


def numbers(cell: str) -> List[float]:
    return [float(x) for x in NUMBER.findall(cell)]


def class_defaults(cls) -> Dict[str, object]:
    """The keyword defaults of ``cls`` and its bases' constructors (a
    subclass's own over its bases')."""
    options = {}
    for klass in reversed(cls.__mro__):
        if '__init__' in vars(klass):
            for name, p in inspect.signature(klass.__init__).parameters.items():
                if p.default is not inspect.Parameter.empty:
                    options[name] = p.default
    return options


def build_method(config: str):
    """The method a config resolves to, its resolved options (the class
    defaults overridden by ``ctta_method``, the default optimiser filled in
    as the loop does), and its EMA teacher hook."""
    from mmengine.config import Config
    from mmseg.registry import HOOKS

    import mmseg_moase  # noqa: F401  (registers everything)
    from mmseg_moase.methods.builder import resolve_method_cfg
    from mmseg_moase.registry import METHODS

    cfg = Config.fromfile(str(ROOT / config))
    method_cfg = resolve_method_cfg(cfg.ctta_method.to_dict())
    method = METHODS.build(dict(method_cfg))
    options = class_defaults(type(method))
    options.update({k: v for k, v in method_cfg.items() if k != 'type'})
    hooks = [HOOKS.build(dict(h)) for h in cfg.get('custom_hooks', [])
             if h.get('type') == 'EMATeacherHook']
    return cfg, method, options, (hooks[0] if hooks else None)


def resolved_defaults(config: str) -> Dict[str, Optional[object]]:
    """What the defaults table states, as the config resolves it: the
    method's optimiser config and the learning rates of the parameter groups
    it declares, and the EMA momenta the hook runs with once bound to the
    method (the hook's own, else those the method declares)."""
    _, method, options, hook = build_method(config)
    ow = getattr(method, 'optim_wrapper_cfg', None) or {}
    opt = ow.get('optimizer', {})
    adapter_lrs = set(((ow.get('paramwise_cfg') or {}).get('group_lr')
                       or {}).values())
    for group in getattr(method, 'param_groups', ()):
        if getattr(group, 'lr_option', None) in options:
            adapter_lrs.add(options[group.lr_option])
    momenta = None
    if hook is not None:
        hook.before_ctta(None, method)  # as the loop does before the stream
        momenta = [hook.momentum] + sorted(set(hook.group_momentum.values()))
    uses_anchor = getattr(method, 'uses_anchor', False) and \
        getattr(method, 'multi_view', False)
    return {
        'Optimiser': opt.get('type'),
        'Learning rate': opt.get('lr'),
        'Adapter learning rate': sorted(adapter_lrs) or None,
        'Adam betas': tuple(opt['betas']) if 'betas' in opt else None,
        'EMA momentum': momenta,
        'Restore probability': getattr(method, 'restore_prob', None),
        'Anchor gate': method.threshold if uses_anchor else None,
    }


DEFAULT_ROWS = table_rows(METHOD_DOC.read_text('utf-8'), 'Method')


def test_defaults_table_is_found():
    assert {r['Method'] for r in DEFAULT_ROWS} >= {
        'Source', 'NormStat', 'TENT', 'CoTTA', 'MoASE', 'ViDA'}


def _check_cell(column: str, cell: str, value) -> Optional[str]:
    if cell == '-':
        return None if value is None else f'{column}: docs say -, config {value}'
    if value is None:
        return f'{column}: docs say {cell!r}, the config sets nothing'
    if column == 'Optimiser':
        return None if str(value) in cell else \
            f'{column}: docs say {cell!r}, config {value}'
    stated = numbers(cell)
    if column == 'Learning rate':
        stated, value = stated[:1], [value]
    elif column in ('Restore probability', 'Anchor gate'):
        stated, value = stated[:1], [value]
    elif column == 'Adapter learning rate':
        stated = sorted(set(stated))
    else:
        value = list(value)
    same = len(stated) == len(value) and all(
        math.isclose(a, b, rel_tol=1e-9) for a, b in zip(stated, value))
    return None if same else f'{column}: docs say {cell!r}, config {value}'


@pytest.mark.parametrize('row', DEFAULT_ROWS, ids=lambda r: r['Method'])
def test_defaults_table_matches_configs(row):
    configs = re.findall(r'`(configs/[^`]+\.py)`', row['Configs'])
    assert configs, f"{row['Method']}: the row names no config"
    bad = []
    for config in configs:
        for column, value in resolved_defaults(config).items():
            problem = _check_cell(column, row[column], value)
            if problem:
                bad.append(f'{config}: {problem}')
    assert not bad, f"docs/method.md, {row['Method']} row:\n" + '\n'.join(bad)


def _moase_configs() -> List[str]:
    row = next(r for r in DEFAULT_ROWS if r['Method'] == 'MoASE')
    return re.findall(r'`(configs/[^`]+\.py)`', row['Configs'])


def test_other_moase_defaults_match_configs():
    text = METHOD_DOC.read_text('utf-8')
    para = text[text.index('The other MoASE defaults:'):].split('\n\n')[0]
    stated = {k: ast.literal_eval(v)
              for k, v in re.findall(r'`(\w+)=([^`]+)`', para)}
    assert len(stated) >= 5, para
    for config in _moase_configs():
        _, _, options, _ = build_method(config)
        for key, value in stated.items():
            assert options.get(key) == value, (
                f'docs/method.md says MoASE {key}={value!r}; {config} '
                f'resolves it to {options.get(key)!r}')


def _eval_dict_code(code: str) -> dict:
    """Evaluate a ``model = dict(...)`` block of literals and ``dict`` calls."""
    def value(node):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'dict':
            return {kw.arg: value(kw.value) for kw in node.keywords}
        return ast.literal_eval(node)
    tree = ast.parse(code)
    assign = next(n for n in tree.body if isinstance(n, ast.Assign))
    return value(assign.value)


def fenced_blocks(text: str) -> List[str]:
    blocks, current = [], None
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            if current is None:
                current = []
            else:
                blocks.append('\n'.join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_adapter_options_match_configs():
    """The adapter options block of docs/method.md, against the configs."""
    block = next(b for b in fenced_blocks(METHOD_DOC.read_text('utf-8'))
                 if "type='MixVisionTransformerMoASE'" in b)
    doc = _eval_dict_code(block)['backbone']
    assert 'moase_cfg' in doc and len(doc['moase_cfg']) >= 8, doc
    from mmseg.registry import MODELS
    for config in _moase_configs():
        cfg, _, _, _ = build_method(config)
        # The config's values over the classes' defaults, tuples as lists.
        given = cfg.model.backbone.to_dict()
        backbone = _as_lists(dict(class_defaults(MODELS.get(given['type'])),
                                  **given))
        adapter_cfg = dict(type='MoASEAdapter')  # the backbone's default
        adapter_cfg.update(given.get('moase_cfg') or {})
        backbone['moase_cfg'] = _as_lists(dict(
            class_defaults(MODELS.get(adapter_cfg['type'])), **adapter_cfg))
        for key, value in doc.items():
            if key == 'moase_cfg':
                for k, v in value.items():
                    assert backbone['moase_cfg'].get(k) == v, (
                        f'docs/method.md: moase_cfg.{k}={v!r}; {config}: '
                        f"{backbone['moase_cfg'].get(k)!r}")
            else:
                assert backbone.get(key) == value, (
                    f'docs/method.md: {key}={value!r}; {config}: '
                    f'{backbone.get(key)!r}')


def _as_lists(options: dict) -> dict:
    """``options`` with tuple values as lists (a config's literal form)."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in options.items()}


def test_doc_files_listed_in_readme():
    """Every page under docs/ is reachable from the README's contents."""
    links = {osp.normpath(t.partition('#')[0]) for t in relative_links(README)}
    missing = [p.name for p in DOC_FILES[1:]
               if f'docs/{p.name}' not in links]
    assert not missing, f'README.md links none of {missing}'
