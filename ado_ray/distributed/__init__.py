"""The thin Ray shell: the mixture actor, the Ray Train wrapper and the Tune + Optuna sweep."""
