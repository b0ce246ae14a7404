"""`charlm sample`: generate text from a trained model, streamed to stdout as it is made."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import sys
import tempfile

import click

from charlm.config import SampleConfig
from charlm.errors import UsageError

from .output import notice
from .threadopt import threads_option

SEPARATOR = "\n\n---\n"   # between samples of --num-samples N: a blank line, then a line '---'
_S = SampleConfig()


def max_bytes_option(f):
    """``--max-bytes SIZE``: the bound on a text read into memory (shared by sample, eval and score)."""
    from charlm.boundedread import TEXT_LIMIT, fmt_bytes, parse_size

    return click.option("--max-bytes", default=None, metavar="SIZE",
                        callback=lambda ctx, param, v: None if v is None else parse_size(v),
                        help=f"Largest input text read into memory, e.g. 500M  [default: {fmt_bytes(TEXT_LIMIT)}]")(f)


def read_prime_file(path: str, max_bytes: int | None = None) -> str:
    """The text of --prime-file (``-`` reads stdin), decoded as UTF-8, at most ``max_bytes``."""
    from charlm.boundedread import read_bytes

    raw = read_bytes(path, limit=max_bytes, what="--prime-file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"--prime-file {path} is not UTF-8 (byte {e.start}); convert it to UTF-8") from None


_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([ntr0\\]))")
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\"}


def unescape(text: str) -> str:
    """--stop's backslash escapes: \\n \\t \\r \\0 \\\\ \\xHH \\uXXXX \\UXXXXXXXX; any other backslash stays."""

    def sub(m):
        code = m.group(1) or m.group(2) or m.group(3)
        if code:
            value = int(code, 16)
            if value > 0x10FFFF:
                raise UsageError(f"--stop: {m.group(0)} is beyond the last code point U+10FFFF")
            return chr(value)
        return _SIMPLE[m.group(4)]

    return _ESCAPE.sub(sub, text)


class _TextAsBytes:
    def __init__(self, stream):
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data.decode("utf-8"))

    def flush(self) -> None:
        self.stream.flush()


class _Sink:
    """Text out as UTF-8 bytes (whatever the locale or pipe), flushed per piece.

    ``--output FILE`` is written to a temporary file beside it and renamed over FILE only when the
    sample is complete, so an error or Ctrl-C never leaves FILE half-written; a file of the model's
    run directory is refused up front (``charlm.rundir.check_output_path``).
    """

    def __init__(self, output: str | None, model):
        self.output, self.tmp, self.file = output, None, None
        if output:
            from charlm.rundir import check_output_path
            from charlm.safefile import is_special, open_in_place

            check_output_path(output, model)
            folder = os.path.dirname(os.path.abspath(output))
            try:
                if is_special(output):   # /dev/null, a FIFO: written in place, never replaced by a file
                    self.file = open_in_place(output)
                else:
                    fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(output)}.", suffix=".tmp",
                                                    dir=folder)
                    self.file = os.fdopen(fd, "wb")
            except OSError as e:
                raise UsageError(f"cannot write --output {output}: {e.strerror}") from None
        self.stream = self.file or getattr(sys.stdout, "buffer", None) or _TextAsBytes(sys.stdout)
        self.last = ""

    def write(self, text: str) -> None:
        if text:
            try:
                self.stream.write(text.encode("utf-8", "replace"))
                self.stream.flush()
            except OSError as e:
                if self.file is None:
                    raise   # stdout: the CLI's handler words it
                raise UsageError(f"cannot write --output {self.output}: {e.strerror}") from None
            self.last = text[-1]

    def close(self, ok: bool = True) -> None:
        if self.file is None:
            if ok and self.last != "\n" and sys.stdout.isatty():  # keep the shell prompt on its own line
                self.write("\n")
            return
        try:
            self.file.close()
            if ok and self.tmp is not None:   # None: a device or FIFO written in place
                os.chmod(self.tmp, 0o666 & ~_umask())
                os.replace(self.tmp, self.output)
                self.tmp = None
        except OSError as e:
            raise UsageError(f"cannot write --output {self.output}: {e.strerror}") from None
        finally:
            if self.tmp is not None:
                try:
                    os.unlink(self.tmp)
                except OSError:
                    pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@click.command("sample")
@click.argument("model", metavar="RUN_DIR|MODEL.safetensors", type=click.Path(exists=True))
@click.option("--length", "-n", type=int, default=_S.length, show_default=True,
              help="Tokens to generate (characters; bytes for a byte-level model).")
@click.option("--temperature", "-t", type=float, default=_S.temperature, show_default=True,
              help="Softmax temperature; 0 = always the most likely character.")
@click.option("--top-k", type=int, default=_S.top_k, show_default=True, help="Keep the K most likely (0 = off).")
@click.option("--top-p", type=float, default=_S.top_p, show_default=True,
              help="Nucleus: keep the smallest most-likely set reaching probability P (1 = off).")
@click.option("--seed", type=int, default=None, help="Random seed: the same seed gives the same text.")
@click.option("--prime", default=None, help="Text to start from (fed to the model first).")
@click.option("--prime-file", default=None, metavar="FILE", help="Read the prime from FILE ('-' = stdin).")
@click.option("--num-samples", type=int, default=1, show_default=True,
              help="Samples generated together as a batch; printed one after another, separated by a "
                   "blank line and a line '---'.")
@click.option("--stop", multiple=True, metavar="STRING",
              help="End a sample at the first occurrence of STRING (included). Repeatable. Backslash escapes "
                   "are interpreted: \\n \\t \\r \\0 \\\\ \\xHH \\uXXXX, so --stop \"\\n\\n\" stops at a "
                   "blank line.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the text to this file instead of stdout.")
@click.option("--echo-prime/--no-echo-prime", default=True, help="Print the prime before the sample.")
@click.option("--unknown", type=click.Choice(["error", "skip", "replace"]), default="error", show_default=True,
              help="Prime characters the model never saw: fail, drop them, or map them to a known one.")
@click.option("--beam", type=int, default=0, show_default=True, metavar="K",
              help="Beam search with K beams: the most probable continuation, deterministic (0 = sample). "
                   "More conservative than sampling; --num-samples N prints the N best beams.")
@click.option("--length-penalty", type=float, default=0.0, show_default=True, metavar="A",
              help="Beam search: rank by log-probability / length**A (matters with --stop).")
@max_bytes_option
@threads_option
@click.option("--checkpoint", default=None, metavar="STEP|PATH",
              help="Sample a resume checkpoint of RUN_DIR (a step it kept, or a checkpoint file) instead of "
                   "its best model, e.g. to watch a run learn.")
@click.pass_context
def sample(ctx, model, length, temperature, top_k, top_p, seed, prime, prime_file, num_samples, stop, output,
           echo_prime, unknown, beam, length_penalty, max_bytes, checkpoint):
    """Generate text from a trained model.

    The text goes to stdout (prime first, unless --no-echo-prime), streamed as it is made; notices go
    to stderr. A single sample is streamed in small chunks; with --num-samples N each sample is printed
    when the batch is done.
    """
    from charlm.loading import load

    if prime is not None and prime_file is not None:
        raise UsageError("give either --prime or --prime-file, not both")
    stop = tuple(unescape(s) for s in stop)
    if prime_file is not None:
        prime = read_prime_file(prime_file, max_bytes)
    prime = prime or ""
    if output:
        from charlm.rundir import check_output_path

        check_output_path(output, model)   # before any work: never replace a file of the run
    SampleConfig(length=length, temperature=temperature, top_k=top_k, top_p=top_p, num_samples=num_samples)
    m = load(model, checkpoint=checkpoint)
    if checkpoint is not None:
        notice(f"sampling {m.meta['checkpoint']} (step {m.meta['extra']['step']})")
    if beam:
        return _beam(ctx, m, prime, beam, length_penalty, num_samples, stop, unknown, echo_prime, output)
    announce = seed is None and temperature > 0   # argmax (temperature 0) needs no seed
    if seed is None:
        seed = secrets.randbelow(2**31) if announce else 0
    kwargs = dict(length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, prime=prime,
                  num_samples=num_samples, stop=stop, unknown=unknown, echo_prime=echo_prime, notice=notice)
    pieces = m.iter_sample(**kwargs)
    first = next(pieces, None)   # validation and prime errors surface here, before any output
    if announce:
        notice(f"seed {seed} (pass --seed {seed} to get this text again)")
    chunks = itertools.chain([first] if first else [], pieces)
    sink = _Sink(output, model)
    ok = False
    try:
        if num_samples == 1:
            for chunk in chunks:
                sink.write(chunk[0])
        else:
            parts = [[] for _ in range(num_samples)]
            for chunk in chunks:
                for b, text in enumerate(chunk):
                    parts[b].append(text)
            sink.write(SEPARATOR.join("".join(p) for p in parts))
        ok = True
    finally:
        sink.close(ok)


def _beam(ctx, m, prime, beam, length_penalty, num_samples, stop, unknown, echo_prime, output):
    """`sample --beam K`: the num_samples best beams, printed like samples."""
    from click.core import ParameterSource

    from charlm.beam import lm_beam

    if beam < 0 or num_samples > beam:
        raise UsageError(f"--beam {beam} with --num-samples {num_samples}: --beam must be >= 1 and at least "
                         "--num-samples (it prints the --num-samples best beams)")
    ignored = [f"--{n.replace('_', '-')}" for n in ("temperature", "top_k", "top_p", "seed")
               if ctx.get_parameter_source(n) not in (ParameterSource.DEFAULT, None)]
    if ignored:
        notice(f"--beam is deterministic: {', '.join(ignored)} ignored")
    hyps = lm_beam(m, prime, beam=beam, length=ctx.params["length"], length_penalty=length_penalty, stop=stop,
                   unknown=unknown, notice=notice)
    texts = [(prime if echo_prime else "") + m.tokenizer.decode(h.ids) for h in hyps[:num_samples]]
    sink = _Sink(output, ctx.params["model"])
    ok = False
    try:
        sink.write(SEPARATOR.join(texts))
        ok = True
    finally:
        sink.close(ok)
