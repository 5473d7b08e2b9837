"""One module per ``pemesh`` command: each chains the stages it needs."""
