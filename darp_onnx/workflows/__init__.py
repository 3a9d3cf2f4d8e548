"""The user-facing jobs (prune, finetune) as compositions of the stages.

`prune.py`: `prepare` (= `load` -> `analyse_costs` -> `prepare_data`) -> `score` -> `extract` ->
`recover` -> `rewrite_model` -> `validate` -> `write`, composed by `run_prune` over one `PruneConfig`
(`config.py`); `results.py`: the typed `PruneResult`; `common.py`: the stages prune and finetune share.
"""
