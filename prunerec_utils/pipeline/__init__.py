"""The pipeline over a run folder ``runs/<dataset>/<profile>/``.

``run`` (:class:`~prunerec_utils.pipeline.run.Run`: layout, seeded samples, stages),
``steps`` (the one cached-step primitive), ``stages`` (Stage I-III and vocabulary pruning as
cached steps), ``evaluate`` (stored, resumable evaluations; CLI), ``ablations`` (variants as
child runs), ``runner`` (papermill driver).
"""
