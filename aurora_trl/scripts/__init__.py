"""The stage scripts, in TRL's script shape (`main(script_args, training_args, model_args)` + `make_parser()`), and
what they share: data and model loading, the end of a run, and running a recipe."""
