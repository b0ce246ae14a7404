"""`charlm import`: a PyTorch-trained state dict (safetensors) -> a charlm run directory."""

from __future__ import annotations

import shlex

import click

from .output import notice


@click.command("import")
@click.argument("state", metavar="STATE.safetensors", type=click.Path(exists=True, dir_okay=False))
@click.option("--cell", type=click.Choice(["rnn", "lstm", "gru"]), required=True,
              help="The recurrent cell the state dict was trained with.")
@click.option("--tokenizer", "tokenizer", required=True, type=click.Path(exists=True), metavar="TOKENIZER.json",
              help="The tokenizer (charlm JSON, or a RUN_DIR holding tokenizer.json) that maps the model's ids.")
@click.option("--nonlinearity", type=click.Choice(["tanh", "relu"]), default="tanh", show_default=True,
              help="Activation of an rnn cell (nn.RNN(nonlinearity=...)).")
@click.option("--out", required=True, type=click.Path(file_okay=False), metavar="RUN_DIR",
              help="Run directory to create (must not already hold a model).")
def import_cmd(state, cell, tokenizer, nonlinearity, out):
    """Turn a PyTorch state dict into a charlm RUN_DIR that sample, eval and info accept.

    The state dict must come from a module with attributes embed (nn.Embedding; leave it out for
    one-hot input), rnn (nn.RNN/LSTM/GRU, batch_first=False) and head (nn.Linear), saved with
    safetensors.torch.save_file(model.state_dict(), STATE). Layers, hidden, embedding and vocabulary
    sizes are read from the tensor shapes. The run directory is printed on stdout.
    """
    from charlm.interop import import_state_dict

    res = import_state_dict(state, cell=cell, tokenizer=tokenizer, out=out, nonlinearity=nonlinearity)
    c = res.config
    if res.stripped:
        notice(f"removed the {res.stripped!r} prefix from every tensor name")
    if res.converted:
        notice(f"converted {len(res.converted)} tensor(s) to float32")
    emb = f"embedding {c.embed}" if c.embed else "one-hot input"
    notice(f"imported {c.cell}, {c.layers} x {c.hidden} hidden, {emb}, vocabulary {c.vocab_size} "
           f"({res.params:,} parameters); sample it with: charlm sample {shlex.quote(str(res.run_dir))}")
    click.echo(str(res.run_dir))
