"""The user-facing jobs (prune, finetune) as compositions of the stages."""
