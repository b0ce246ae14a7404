"""Everything decided before the first training step: which options apply (flags,
TOML config, a resumed run's saved config), where the run lives, the corpus, the
tokenizer, the split and the streams.

A run directory holds ``config.json`` ({"corpus", "model", "train", "charlm_version"})
and ``tokenizer.json`` from the start, so ``--resume`` and ``charlm eval --split`` can
rebuild exactly the same data.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, fields

import numpy as np

from . import __version__, memory, rundir
from . import checkpoint as ckpt
from .config import DataConfig, ModelConfig, TrainConfig
from .errors import UnknownSymbolsError, UsageError

DATA_KEYS = {f.name for f in fields(DataConfig)} - {"sources"}
MODEL_KEYS = {f.name for f in fields(ModelConfig)} - {"vocab_size"}
TRAIN_KEYS = {f.name for f in fields(TrainConfig)}
# options that may change when a run resumes: budgets, cadences, machine
RESUMABLE_KEYS = {"max_steps", "max_epochs", "max_time", "eval_every", "log_every", "save_every",
                  "eval_interval", "log_interval", "val_chars", "sample_every", "keep", "patience", "threads",
                  "device"}
# a budget given at --resume replaces the stored one as a whole (an unnamed budget becomes 0 = none)
BUDGET_KEYS = ("max_steps", "max_epochs", "max_time")
DEFAULT_EPOCHS = 10.0
OPTIMIZER_KEYS = {"optimizer", "weight_decay"}  # chosen together by autosize (rule 6)


@dataclass
class RunSpec:
    run_dir: str
    data: DataConfig
    model_options: dict
    train: TrainConfig
    device: str
    resumed: bool
    explicit: set          # option names the user chose (flags or TOML)
    model: ModelConfig | None = None
    fingerprint: str = ""
    source: object = None  # finetune.Source of --init-from (a new run only)
    lineage: dict | None = None  # where a fine-tuned run came from (config.json and the model's metadata)
    autosize: bool = False  # a new run without --layers/--hidden: charlm.autosize picks the size
    choice: object = None   # the autosize.Choice made in build_data (recorded in config.json)

    def save_files(self, tokenizer, train_cfg: TrainConfig) -> None:
        cfg = {"charlm_version": __version__, "corpus": self.data.to_dict(), "model": self.model.to_dict(),
               "train": train_cfg.to_dict()}
        if self.lineage:
            cfg["fine_tuned_from"] = self.lineage
        if self.choice is not None:
            cfg["autosize"] = self.choice.to_dict()
        ckpt.atomic_write_text(os.path.join(self.run_dir, rundir.CONFIG), json.dumps(cfg, indent=2) + "\n")
        tokenizer.save(os.path.join(self.run_dir, rundir.TOKENIZER))


def _pick(options: dict, keys: set) -> dict:
    return {k: v for k, v in options.items() if k in keys and v is not None}


def default_run_dir(sources) -> str:
    name = "stdin" if not sources else os.path.basename(os.path.normpath(str(sources[0]))) or "corpus"
    name = os.path.splitext(name)[0] or "corpus"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = path = os.path.join("runs", f"{name}-{stamp}")
    n = 1
    while os.path.lexists(path):  # two runs started in the same second get two directories
        n += 1
        path = f"{base}-{n}"
    return path


def read_run_config(run_dir: str) -> dict:
    """RUN_DIR/config.json of a run to resume, with a one-line error naming the file when it is damaged."""
    from .boundedread import read_bytes

    path = os.path.join(run_dir, rundir.CONFIG)
    if not os.path.isdir(run_dir):
        raise UsageError(f"no run directory {run_dir!r}; check the path given to --resume")
    if not os.path.lexists(path):
        raise UsageError(f"{run_dir} has no config.json: it is not a charlm run directory")
    try:
        saved = json.loads(read_bytes(path, limit=rundir.MAX_CONFIG_BYTES, what="run config",
                                      fix="a run's config.json is a few KiB: restore it").decode("utf-8"))
        if not isinstance(saved, dict):
            raise ValueError(f"a JSON {type(saved).__name__}, not an object")
        for key in ("corpus", "model", "train"):
            if not isinstance(saved.get(key), dict):
                raise ValueError(f"missing {key!r}")
        return saved
    except (ValueError, RecursionError) as e:
        raise UsageError(f"{path} is not a valid run config ({str(e)[:100]}); start a new run with --out") from None


def _saved_configs(run_dir: str, saved: dict):
    """(DataConfig, TrainConfig) of a run's config.json; wrong keys or types name the file."""
    try:
        ModelConfig(vocab_size=1, **{k: v for k, v in saved["model"].items() if k != "vocab_size"})
        return DataConfig.from_dict(saved["corpus"]), TrainConfig.from_dict(saved["train"])
    except (UsageError, TypeError) as e:
        raise UsageError(f"{os.path.join(run_dir, rundir.CONFIG)} is not a valid run config ({e}); "
                         "restore it, or start a new run with --out") from None


def _check_out(run_dir: str, sources) -> None:
    """A new run directory must not shadow a named corpus, nor sit inside a corpus directory (its own
    files would be read as text when the run resumes)."""
    from . import corpora

    out = os.path.abspath(run_dir)
    for s in sources:
        s = os.fspath(s)
        if s == "-":
            continue
        if not os.path.exists(s) and corpora.is_named(s) and os.path.normpath(run_dir) == os.path.normpath(s):
            raise UsageError(f"--out {run_dir} would shadow the named corpus {s!r} (a directory of that name is "
                             "read instead of the corpus on resume): choose another --out, e.g. runs/" + s)
        if os.path.isdir(s) and (out + os.sep).startswith(os.path.abspath(s) + os.sep):
            raise UsageError(f"--out {run_dir} is inside the corpus directory {s}: the run's own files would be "
                             "read as corpus text on resume; choose an --out outside it")


def prepare_run(sources: list, options: dict, *, resume: str | None, notice) -> RunSpec:
    """Resolve options into configs (validating them) without touching the corpus yet."""
    explicit = {k for k, v in options.items() if v is not None}
    out = options.pop("out", None)
    init_from = options.pop("init_from", None)
    source, lineage = None, None
    if resume:
        if init_from:
            raise UsageError("--init-from starts a new run from trained weights, and --resume continues a run "
                             "from its own checkpoint: give one of them")
        saved = read_run_config(resume)
        lineage = saved.get("fine_tuned_from")
        if out and os.path.abspath(out) != os.path.abspath(resume):
            raise UsageError("--out contradicts --resume: a resumed run continues in its own directory")
        if sources and tuple(sources) != tuple(saved["corpus"].get("sources", ())):
            raise UsageError(f"the corpus given ({', '.join(sources)}) is not the run's "
                             f"({', '.join(saved['corpus'].get('sources', ()))}); drop it when resuming")
        merged = {**saved["corpus"], **saved["model"], **saved["train"]}
        for k in sorted(explicit - {"out"} - RESUMABLE_KEYS):
            if k in merged and _norm(options[k]) != _norm(merged[k]):
                raise UsageError(f"--{k.replace('_', '-')} {options[k]} contradicts the run being resumed "
                                 f"({k} = {merged[k]}); drop it, or start a new run with --out")
        data, train_cfg = _saved_configs(resume, saved)
        model_options = {k: v for k, v in saved["model"].items() if k != "vocab_size"}
        changes = _pick(options, RESUMABLE_KEYS)
        if set(changes) & set(BUDGET_KEYS):
            changes = {**dict.fromkeys(BUDGET_KEYS, 0), **changes}
        train_cfg = train_cfg.replace(**changes)
        run_dir, resumed = resume, True
    else:
        if not sources:
            raise UsageError("no corpus given: pass text files, a directory, '-' for stdin, "
                             "or a named corpus such as 'stdlib'")
        if init_from:
            from . import finetune

            source = finetune.read_source(init_from)
            tok = source.tokenizer
            data = DataConfig(sources=tuple(sources), **{"level": tok.level, "normalize": tok.normalize,
                                                         **_pick(options, DATA_KEYS)})
            finetune.check_data_options(source, data)
            model_options = finetune.model_options(source, options, explicit)
            notice(f"fine-tuning {source.path}" + (f" (step {source.step})" if source.step is not None else "")
                   + ": its model config and vocabulary, a fresh optimizer")
        else:
            data = DataConfig(sources=tuple(sources), **_pick(options, DATA_KEYS))
            if data.unknown in ("skip", "extend"):
                raise UsageError(f"--unknown {data.unknown} applies to fine-tuning (--init-from MODEL), where the "
                                 "vocabulary is given; a new vocabulary holds every symbol of the corpus")
            model_options = _pick(options, MODEL_KEYS)
        ModelConfig(vocab_size=1, **model_options)  # validate now, before reading any text
        train_cfg = TrainConfig(**_pick(options, TRAIN_KEYS))
        if not (train_cfg.max_steps or train_cfg.max_epochs or train_cfg.max_time):
            train_cfg = train_cfg.replace(max_epochs=DEFAULT_EPOCHS)
            notice(f"no budget given: training for {DEFAULT_EPOCHS:g} epochs "
                   "(set --max-steps, --max-epochs or --max-time)")
        run_dir = out or default_run_dir(sources)
        _check_out(run_dir, sources)
        rundir.check_fresh(run_dir)  # early, for a quick answer; decided again under the run lock
        if {"hidden", "layers", "embed"} & explicit:  # a size the user chose: refuse it before any disk work
            memory.check_training(ModelConfig(vocab_size=1, **model_options), train_cfg)
        resumed = False
    from .backends import resolve_device

    device = resolve_device(train_cfg.device, notice)
    from . import autosize

    spec = RunSpec(run_dir, data, model_options, train_cfg, device, resumed, explicit, source=source,
                   lineage=lineage)
    spec.autosize = not resumed and source is None and autosize.wanted(explicit, options)
    return spec


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


@dataclass
class RunData:
    tokenizer: object
    streams: object
    val: np.ndarray | None
    train_cfg: TrainConfig
    starts: list | None = None  # --val-split each: id offset where each source begins


def build_data(spec: RunSpec, *, notice) -> RunData:
    """Read and encode the corpus, split it, fit the window shape, make the streams."""
    from . import corpus

    d = spec.data
    tok = rundir.resume_tokenizer(spec.run_dir) if spec.resumed else None
    capped = bool(d.vocab_cap) and d.unknown == "replace"
    read = {"encoding": d.encoding, "errors": d.errors, "glob": d.glob or "**/*", "notice": notice,
            "max_bytes": d.max_bytes or None}
    stdin = None
    if spec.source is not None and not spec.resumed:  # fine-tuning: the source's vocabulary, adapted
        from . import finetune

        stdin = finetune.spool_stdin(d.sources)
        counts, _ = corpus.count_sources(list(d.sources), level=d.level, normalize=d.normalize, stdin=stdin, **read)
        tok, enc = finetune.adapt_vocabulary(spec.source.tokenizer, counts, d.unknown, notice)
        spec.lineage = spec.source.lineage(tok)
    elif tok is not None and d.unknown in ("skip", "replace"):
        from .finetune import with_policy

        enc = with_policy(tok, d.unknown)
    else:
        enc = tok
    ids_path = os.path.join(spec.run_dir, rundir.IDS)
    starts = [] if spec.train.val_split == "each" else None
    if spec.resumed and tok is not None and not corpus.rereadable(d.sources):
        ids, built = corpus.load_saved_ids(ids_path, tok), tok  # stdin or a pipe: the text is in RUN/ids.npy
    else:
        # encoded once into RUN_DIR/ids.npy and memory-mapped, so a large corpus never sits in RAM as text
        try:
            vocab = corpus.VocabSpec(level=d.level, normalize=d.normalize, max_vocab=d.vocab_cap if capped else None,
                                     unknown="replace" if capped else "error")
            ids, built, _ = corpus.load_ids(list(d.sources), out=ids_path, tokenizer=enc, vocab=vocab,
                                            read=corpus.ReadSpec(stdin=stdin, **read), starts=starts)
        except UnknownSymbolsError as e:
            if not spec.resumed:
                raise
            raise rundir.changed_corpus(spec.run_dir, e) from None
        finally:
            if stdin is not None:
                stdin.close()
    tok = tok if tok is not None else built
    if d.vocab_cap and not capped and len(tok) > d.vocab_cap:
        raise UsageError(f"the corpus has {len(tok)} distinct symbols, over --vocab-cap {d.vocab_cap}; "
                         "raise the cap, use --level byte, or --unknown replace to map the rarest "
                         "symbols to one unknown id")
    spec.fingerprint = "sha256:" + hashlib.sha256(np.ascontiguousarray(ids).tobytes()).hexdigest()[:32]
    cfg = spec.train
    starts = starts or None  # none recorded (text read back from ids.npy): one source
    train_ids, val_ids, _ = corpus.split_ids(ids, cfg.val_frac, cfg.test_frac, starts=starts)
    if spec.autosize and spec.choice is None:
        _choose_size(spec, len(train_ids), len(tok), notice)
        cfg = spec.train
    spec.model = ModelConfig(vocab_size=len(tok), **spec.model_options)
    memory.check_training(spec.model, spec.train, notice=notice)
    if not spec.resumed:
        B, T = corpus.fit_shape(len(train_ids), cfg.batch_size, cfg.seq_len)
        if (B, T) != (cfg.batch_size, cfg.seq_len):
            if {"batch_size", "seq_len"} & spec.explicit:
                pass  # explicit values that cannot fit: Streams below says so
            else:
                notice(f"corpus is small ({len(train_ids):,} training characters): using --batch-size {B} "
                       f"--seq-len {T}")
                cfg = cfg.replace(batch_size=B, seq_len=T)
    streams = corpus.Streams(train_ids, cfg.batch_size, cfg.seq_len, seed=cfg.seed,
                             shuffle_offsets=cfg.shuffle_offsets)
    val = val_ids if val_ids is not None and len(val_ids) >= 2 else None
    if cfg.val_frac > 0 and val is None:
        notice("validation split is too small to evaluate; model.safetensors will hold the latest weights")
    notice(f"corpus: {len(ids):,} characters, vocabulary {len(tok)}, "
           f"{len(train_ids):,} train / {0 if val is None else len(val):,} validation"
           + (f" ({val_where(cfg, starts)})" if cfg.val_frac > 0 else ""))
    spec.train = cfg
    return RunData(tok, streams, val, cfg, starts)


def val_where(cfg: TrainConfig, starts) -> str:
    """Where the validation text comes from, in words (printed when a run starts)."""
    pct = f"{cfg.val_frac:.0%}" if cfg.val_frac * 100 == int(cfg.val_frac * 100) else f"{cfg.val_frac:g}"
    if cfg.val_split == "each":
        n = len(starts) if starts else 1
        return f"--val-split each: the last {pct} of each of the {n} source{'s' * (n != 1)}"
    return f"--val-split tail: the last {pct} of the concatenated corpus"


def preview_choice(spec: RunSpec, *, notice) -> None:
    """For --print-config: read the corpus into a scratch directory and make the size choice
    (``spec.model_options``, ``spec.choice``) without creating the run directory."""
    import tempfile

    if not spec.autosize:
        return
    set_threads(spec.train.threads)
    spec.numpy_first = spec.device == "cpu"  # as the run will: the size calibration on NumPy
    run_dir = spec.run_dir
    with tempfile.TemporaryDirectory(prefix="charlm-preview-") as tmp:
        spec.run_dir = tmp
        try:
            build_data(spec, notice=notice)
        finally:
            spec.run_dir = run_dir


def _choose_size(spec: RunSpec, train_chars: int, vocab: int, notice) -> None:
    """Budget-aware model size (charlm.autosize); explicit options are never replaced."""
    from . import autosize

    m = ModelConfig(vocab_size=vocab, **{"cell": autosize.CELL, **spec.model_options})
    # a CPU run calibrates on the NumPy backend, which its first steps run on, and predicts the compiled
    # kernels' speed from it (charlm.autosize): the same choice whether the kernel cache is cold or warm
    numpy_first = getattr(spec, "numpy_first", False)
    choice = autosize.choose(spec.train, cell=m.cell, embed=m.embed, vocab=vocab, train_chars=train_chars,
                             device="numpy" if numpy_first else spec.device)
    spec.model_options.update({k: v for k, v in choice.model_options.items() if k not in spec.explicit})
    keep = set(spec.explicit)
    if keep & OPTIMIZER_KEYS:  # the chosen decay belongs to the chosen optimizer: the user's either wins both
        keep |= OPTIMIZER_KEYS
    spec.train = spec.train.replace(**{k: v for k, v in choice.train_options.items() if k not in keep})
    spec.choice = choice
    notice(choice.line)


def planned_threads(n: int) -> int:
    """The thread count ``set_threads(n)`` gives Numba, without importing Numba."""
    if not n:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cap = os.environ.get("NUMBA_NUM_THREADS", "")
    return max(1, min(n, int(cap))) if cap.isdigit() and int(cap) > 0 else max(1, n)


def set_threads(n: int) -> None:
    """One owner of the cores: Numba's pool gets ``n`` threads (0 = every CPU this process may
    use); the BLAS that the kernels call runs on 1 thread (``charlm.backends.cpu.configure``, called
    here first: ``numba.set_num_threads`` starts the threading layer, which must be chosen before).

    The CPU kernels split every phase over Numba's threads themselves (hidden units in the
    recurrent loops, rows in the window GEMMs) and call single-threaded BLAS inside those
    threads; a threaded BLAS on top would oversubscribe the cores. Measured with
    bench/bench_train.py on 2 cores (Zen 4), chars/s of this policy over "BLAS owns the cores"
    (Numba 1 thread, OpenBLAS 2 threads, same kernels): S-lstm 1.07, M-lstm 1.03, M-gru 1.07,
    M-rnn 1.00, L-lstm 0.99 (noise is about +-5%); over 1 thread: 1.7-1.9x at M and L.
    The loop split synchronises once per time step, so more threads than physical cores
    (SMT siblings) are unlikely to help; not measured beyond 2 cores. With n = 0 the kernels
    measure and may run on 1 thread while other processes keep the cores busy
    (``charlm.backends.cpu.threads``); n > 0 pins the count.
    """
    import numba

    from .backends import cpu
    from .backends.cpu import threads

    cpu.configure()
    threads.adapt(not n)  # 0: each kernel may use fewer while other processes hold the cores
    if not n:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
