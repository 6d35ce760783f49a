"""The pipeline over a run folder ``runs/<dataset>/<profile>/``.

``run`` (:class:`~prunerec_utils.pipeline.run.Run`: layout, seeded samples, stages),
``finetune`` (BIGRec fine-tune and distillation through ``transformers.Trainer``, as cached steps),
``stages`` (Stage I-III and vocabulary pruning as cached steps), ``evaluate`` (stored, resumable
evaluations; CLI), ``ablations`` (variants as child runs), ``size_targets`` (parameter budgets of a
pruned model), ``banners`` (which executed chapter is stale). The cached-step primitive itself is
:mod:`prunerec_utils.steps`, below every floor.
"""
