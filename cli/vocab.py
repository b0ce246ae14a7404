"""``charlm vocab CORPUS...``: corpus statistics (size, vocabulary, frequent and rare symbols)."""

from __future__ import annotations

import click

from charlm.boundedread import parse_size
from charlm.corpus import count_sources, vocab_stats

from .output import emit_json, notice


def corpus_options(f):
    """The options every corpus-reading command shares (--encoding, --errors, --glob)."""
    f = click.option("--glob", "glob", default="**/*", show_default=True, metavar="PATTERN",
                     help="Files to read inside directories ('*.py' matches at any depth; hidden "
                          "and binary-looking files are skipped).")(f)
    f = click.option("--errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True,
                     help="What to do with bytes that are not valid in --encoding.")(f)
    f = click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the files.")(f)
    f = click.option("--max-bytes", default="1G", show_default=True, metavar="SIZE",
                     callback=lambda ctx, param, v: parse_size(v),
                     help="Most bytes read from stdin or a stream (FIFO, pipe, device).")(f)
    return f


@click.command("vocab")
@click.argument("corpus", nargs=-1, required=True)
@click.option("--level", type=click.Choice(["char", "byte"]), default="char", show_default=True,
              help="Count characters or UTF-8 bytes.")
@click.option("--normalize", type=click.Choice(["none", "nfc"], case_sensitive=False), default="none",
              show_default=True, help="Unicode-normalize the text first.")
@click.option("--vocab-cap", type=click.IntRange(min=1), default=None, metavar="N",
              help="Also report how many characters a vocabulary of the N most frequent symbols would "
                   "make unknown.")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many most/least frequent symbols to list.")
@corpus_options
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
def vocab(corpus, level, normalize, vocab_cap, top, encoding, errors, glob, max_bytes, as_json):
    """Show statistics of CORPUS: files, directories, - for stdin, or a named corpus
    (hello, verse, fables, brackets, copy, stdlib)."""
    counts, names = count_sources(list(corpus), level=level, normalize=None if normalize == "none" else "NFC",
                                  encoding=encoding, errors=errors, glob=glob, notice=notice,
                                  max_bytes=max_bytes)
    stats = {"sources": names, **vocab_stats(counts, level=level, top=top, vocab_cap=vocab_cap)}
    if as_json:
        emit_json(stats)
        return
    unit = "bytes" if level == "byte" else "characters"
    shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
    click.echo(f"sources:     {shown}")
    click.echo(f"{unit + ':':<12} {stats['symbols']:,}")
    click.echo(f"{'vocabulary:':<12} {stats['vocab_size']:,} distinct symbols")
    for key, title in (("most_common", "most frequent"), ("least_common", "least frequent")):
        if stats[key]:
            click.echo(f"{title}:")
            for row in stats[key]:
                click.echo(f"  {row['repr']:<16} {row['count']:>12,}  {100 * row['fraction']:7.3f}%")
    cap = stats.get("vocab_cap")
    if cap:
        click.echo(f"--vocab-cap {cap['cap']}: keeps {cap['kept_symbols']:,} symbols, drops "
                   f"{cap['dropped_symbols']:,}; {cap['unknown_symbols']:,} {unit} "
                   f"({100 * cap['unknown_fraction']:.3f}%) would be unknown")
