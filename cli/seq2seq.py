"""`charlm seq2seq train | translate | eval`: character encoder-decoder models with attention."""

from __future__ import annotations

import sys

import click

from charlm.errors import UsageError

from .output import emit_json, notice

_RUN = click.argument("run", metavar="RUN_DIR|MODEL.safetensors", type=click.Path(exists=True))


def _decoding(f):
    """The decoding options shared by translate and eval."""
    opts = [
        click.option("--decode", "method", type=click.Choice(["greedy", "sample", "beam"]), default=None,
                     help="Decoding: greedy (argmax), sample, or beam search [default: beam when --beam K > 1, "
                          "else greedy]."),
        click.option("--beam", type=int, default=1, show_default=True, metavar="K", help="Beam width."),
        click.option("--length-penalty", type=float, default=1.0, show_default=True, metavar="A",
                     help="Beam search ranks by log-probability / length**A (0 = raw, 1 = per symbol)."),
        click.option("--max-len-ratio", type=float, default=1.0, show_default=True, metavar="R",
                     help="Stop decoding after R x source length + the longest training target symbols."),
        click.option("--temperature", "-t", type=float, default=1.0, show_default=True,
                     help="--decode sample: softmax temperature (0 = argmax)."),
        click.option("--top-k", type=int, default=0, show_default=True,
                     help="--decode sample: keep the K most likely."),
        click.option("--top-p", type=float, default=1.0, show_default=True,
                     help="--decode sample: nucleus probability (1 = off)."),
        click.option("--seed", type=int, default=None, help="--decode sample: random seed."),
        click.option("--threads", type=int, default=1, show_default=True, help="Numba threads (0 = every CPU)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _decode_kwargs(method, beam, length_penalty, max_len_ratio, temperature, top_k, top_p, seed) -> dict:
    from charlm.beam import check_options

    check_options(beam, length_penalty)
    if method is None:
        method = "beam" if beam > 1 else "greedy"
    return dict(method=method, beam=beam, length_penalty=length_penalty, max_len_ratio=max_len_ratio,
                temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)


@click.group("seq2seq")
def seq2seq():
    """Sequence to sequence: a character encoder-decoder with Luong attention.

    PAIRS is a TSV file (source<TAB>target per line), a JSONL file ({"source": ..., "target": ...} per
    line) or a built-in task generated on your machine: reverse, copy, dates, numbers, autoencode, with
    parameters after a colon (dates:n=5000,seed=1). Vocabularies reserve ids 0-3 for PAD, BOS, EOS, UNK.
    """


@seq2seq.command("train")
@click.argument("pairs", metavar="PAIRS")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@click.option("--cell", type=click.Choice(["lstm", "gru", "rnn"]), default="lstm", show_default=True)
@click.option("--layers", type=int, default=1, show_default=True, help="Encoder and decoder layers.")
@click.option("--hidden", type=int, default=128, show_default=True, help="Hidden units per layer and direction.")
@click.option("--embed", type=int, default=32, show_default=True, help="Character embedding size (both sides).")
@click.option("--bidirectional/--unidirectional", default=False, show_default=True,
              help="Bidirectional encoder; its final states reach the decoder through a learned projection.")
@click.option("--attention", type=click.Choice(["none", "dot", "general"]), default="general", show_default=True,
              help="Luong global attention (no input feeding), or none.")
@click.option("--shared-vocab", is_flag=True, help="One vocabulary for sources and targets.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True, help="Adam learning rate (cosine decay).")
@click.option("--max-steps", type=int, default=0, show_default=True, help="Step budget (0 = none).")
@click.option("--epochs", type=float, default=0.0, show_default=True, help="Epoch budget (0 = none).")
@click.option("--max-time", type=float, default=0.0, show_default=True, help="Time budget in seconds (0 = none).")
@click.option("--val-frac", type=float, default=0.1, show_default=True, help="Pairs held out for validation.")
@click.option("--scheduled-sampling", "ss_rate", type=float, default=0.0, show_default=True, metavar="P",
              help="Replace each decoder input by the model's own previous prediction with probability P.")
@click.option("--max-target-len", type=int, default=0, show_default=True,
              help="Refuse targets longer than this many characters (0 = no limit).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--log-every", type=int, default=100, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="Numba threads (0 = every CPU).")
@click.option("--bucket-width", type=int, default=None, metavar="W",
              help="Source lengths per batch bucket: 1 = one exact length, W > 1 = W consecutive lengths padded "
                   "to the longest (default: the measured faster choice, see the README).")
def train(pairs, out, cell, layers, hidden, embed, bidirectional, attention, shared_vocab, batch_size, lr,
          max_steps, epochs, max_time, val_frac, ss_rate, max_target_len, seed, log_every, threads, bucket_width):
    """Train an encoder-decoder on PAIRS; writes OUT/model.safetensors and OUT/config.json.

    Without a budget it trains for 10 epochs. Prints the validation metrics (JSON) on stdout at the end.
    """
    from charlm.seq2seq_run import Seq2SeqTrainConfig
    from charlm.seq2seq_run import train as run_train

    if not (max_steps or epochs or max_time):
        epochs = 10.0
    cfg = Seq2SeqTrainConfig(batch_size=batch_size, lr=lr, max_steps=max_steps, epochs=epochs, max_time=max_time,
                             val_frac=val_frac, ss_rate=ss_rate, seed=seed, log_every=log_every,
                             shared_vocab=shared_vocab, max_target_len=max_target_len, threads=threads,
                             **({"bucket_width": bucket_width} if bucket_width is not None else {}))
    model = dict(cell=cell, layers=layers, hidden=hidden, embed=embed, bidirectional=bidirectional,
                 attention=attention)
    tr = run_train(pairs, out, model, cfg, notice=notice)
    notice(f"wrote {out}")
    emit_json(tr.meta["metrics"])


@seq2seq.command("translate")
@_RUN
@click.argument("text", required=False, default=None)
@_decoding
@click.option("--unknown", type=click.Choice(["error", "skip", "replace"]), default="error", show_default=True,
              help="Source characters the model never saw: fail, drop them, or map them to the unknown id.")
def translate(run, text, method, beam, length_penalty, max_len_ratio, temperature, top_k, top_p, seed, threads,
              unknown):
    """Translate TEXT, or every line of stdin (TEXT omitted or '-'), one result per line as it is made."""
    from charlm.seq2seq_run import cores, load

    kw = _decode_kwargs(method, beam, length_penalty, max_len_ratio, temperature, top_k, top_p, seed)
    tr = load(run)
    with cores(threads):
        if text is not None and text != "-":
            click.echo(tr.translate(text, unknown=unknown, notice=notice, **kw))
            return
        from charlm.boundedread import stdin_lines

        for i, src in enumerate(stdin_lines(), 1):   # each line bounded: `< /dev/zero` is an error
            try:
                out = tr.translate(src, unknown=unknown, notice=notice, **kw)
            except UsageError as e:
                raise UsageError(f"stdin line {i}: {e}") from None
            click.echo(out)
            sys.stdout.flush()


@seq2seq.command("eval")
@_RUN
@click.argument("pairs", metavar="PAIRS")
@_decoding
@click.option("--unknown", type=click.Choice(["error", "skip", "replace"]), default="error", show_default=True,
              help="Characters the model never saw: fail, drop them, or map them to the unknown id.")
@click.option("--json", "as_json", is_flag=True, help='Print {"exact", "cer", "nats_per_char", "pairs"} as JSON.')
def eval_cmd(run, pairs, method, beam, length_penalty, max_len_ratio, temperature, top_k, top_p, seed, threads,
             unknown, as_json):
    """Exact-match accuracy, character error rate and nats/char of a model on PAIRS."""
    from charlm.pairs import read_pairs
    from charlm.seq2seq_run import cores, load

    kw = _decode_kwargs(method, beam, length_penalty, max_len_ratio, temperature, top_k, top_p, seed)
    tr = load(run)
    data = read_pairs(pairs)
    with cores(threads):
        res = tr.evaluate(data, unknown=unknown, **kw)
    if as_json:
        emit_json(res)
        return
    click.echo(f"exact match    {res['exact']:.4f}\nCER            {res['cer']:.4f}\n"
               f"nats/char      {res['nats_per_char']:.4f}\npairs          {res['pairs']}")
