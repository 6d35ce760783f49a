"""The paper's studies, one section each, over a run: ``observe`` (§2.2), ``baselines`` (ID
models), ``llm_baselines`` (pruned-LLM baselines, Table 2), ``efficiency`` (speed and memory),
``learning_curve`` (teacher budget), ``scorecard`` (every verdict), ``plots``.
"""
